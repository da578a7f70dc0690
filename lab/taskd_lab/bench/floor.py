"""The floor under our pipeline: what the stack allows with no distribution logic at all.

The same records as the pipeline benchmark (an Avro-encoded no-op ``Task`` keyed by an id of
the same length, from a producer configured like :class:`~streams.client.TaskClient`), the same
count, the same paced rates, through:

- ``confluent-loop``: one process consuming the input topic, producing each record to an
  output topic, committing (:mod:`taskd_lab.bench.passthrough`);
- ``faust-passthrough``: a Faust agent forwarding each event to an output topic;
- ``kafka``: Kafka alone, producer -> consumer, no hop.

Each hop is a child process, measured by the same observer as our pipeline. A hop's
throughput is the rate at which it works off a backlog of ``plan.tasks`` records written ahead,
before it starts (one Python producer could not outpace it, so a blast would measure the
producer): its records *delivered*, first to last, timed by the broker's append time of each
(the floor's topics are created with ``LogAppendTime``), not when the hop called ``produce()``
(a call only queues a record in the client; the broker stamps a whole batch at once, so the
backlog must be large enough to span many batches). Kafka alone: records blasted by one
producer and consumed at once, first sent to last seen, as for our pipeline.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.adapters.admin import delete_groups, delete_topics, wait_for_topics
from streams.adapters.kafka import producer_config
from streams.errors import TopicError
from streams.settings import Settings, child_environment
from streams.wire import Codec, Task
from taskd_lab.bench.measure import (
    Observer,
    Throughput,
    blast,
    latency,
    paced,
    paced_count,
    run_ids,
    throughput,
)
from taskd_lab.bench.plan import PAYLOAD, PRIORITY, TASK_TYPE, BenchPlan, Progress, section_settings
from taskd_lab.bench.procs import BenchError
from taskd_lab.procs import Children

FLOORS = ("confluent-loop", "faust-passthrough", "kafka")
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
READY_S = 90.0


def run_floor(
    plan: BenchPlan, progress: Progress, rates: Sequence[float] | None
) -> list[dict[str, Any]]:
    """Throughput and latency of each floor; ``rates`` None: fractions of its own maximum."""
    return [_one_floor(plan, progress, kind, rates) for kind in FLOORS]


def _one_floor(
    plan: BenchPlan, progress: Progress, kind: str, rates: Sequence[float] | None
) -> dict[str, Any]:
    settings = section_settings(plan, kind.replace("-", ""))
    source = f"{settings.topic_prefix}in"
    sink = source if kind == "kafka" else f"{settings.topic_prefix}out"
    _create(settings, {source, sink})
    try:
        with Children(settings.data_dir.parent / "logs", child_environment(settings)) as children:
            with _Sender(settings, source, plan) as sender:
                ids = run_ids(plan.tasks, "max")
                if kind == "kafka":
                    best = _produce_consume_rate(sender, settings, sink, ids, plan, progress)
                else:
                    progress(f"floor {kind}: a backlog of {plan.tasks:,} records, then the hop")
                    hop = _Hop(children, kind, settings, source, sink)
                    best = _backlog_rate(sender, hop, ids, plan)
                with Observer(settings, (sink,)) as seen:
                    points = _paced(sender, seen, sink, plan, progress, kind, rates, best.tps)
            children.check_alive()
        return {
            "system": kind,
            "throughput_tps": best.tps,
            "throughput_tasks": best.count,
            "latency": points,
        }
    finally:
        delete_topics(settings)
        delete_groups(settings)  # the run's consumer groups too


def _produce_consume_rate(
    sender: _Sender,
    settings: Settings,
    topic: str,
    ids: list[str],
    plan: BenchPlan,
    progress: Progress,
) -> Throughput:
    """Kafka alone: records produced as fast as one producer can while the observer consumes
    them, first sent to last seen."""
    progress(f"floor kafka: {plan.tasks:,} records produced and consumed at once")
    with Observer(settings, (topic,)) as seen:
        sent = blast(sender.send, sender.flush, ids)
        arrived = seen.wait_for(topic, set(ids), plan.timeout_s)
        return throughput(min(sent.values()), arrived.values())


@dataclass(frozen=True, slots=True)
class _Hop:
    """A passthrough program to start, and its topics."""

    children: Children
    kind: str
    settings: Settings
    source: str
    sink: str


def _backlog_rate(sender: _Sender, hop: _Hop, ids: list[str], plan: BenchPlan) -> Throughput:
    """A hop: a backlog written ahead, then the hop started; the rate its records were
    delivered, first to last, by the broker's append times (not when this process read them:
    one Python consumer would cap the figure)."""
    blast(sender.send, sender.flush, ids)
    with Observer(hop.settings, (hop.sink,)) as seen:
        _start_hop(hop.children, hop.kind, hop.settings, hop.source, hop.sink)
        seen.wait_for(hop.sink, set(ids), plan.timeout_s)
        appended = seen.written(hop.sink, ids).values()
        return throughput(min(appended), appended)


def _create(settings: Settings, topics: set[str]) -> None:
    """The floor's topics, each record stamped by the broker when it appends it."""
    admin = AdminClient(settings.kafka_config())
    new = [
        NewTopic(name, num_partitions=settings.shards, replication_factor=1, config=APPEND_TIME)
        for name in topics
    ]
    for name, future in admin.create_topics(new, request_timeout=30).items():
        try:
            future.result()
        except Exception as error:  # a KafkaException carrying the broker's reason
            raise TopicError(f"cannot create {name}: {error}") from error
    wait_for_topics(admin, dict.fromkeys(topics, settings.shards))


def _start_hop(children: Children, kind: str, settings: Settings, source: str, sink: str) -> None:
    program = "loop" if kind == "confluent-loop" else "faust"
    argv = [sys.executable, "-m", "taskd_lab.bench.passthrough", program]
    argv += ["--bootstrap", settings.bootstrap_servers, "--source", source, "--sink", sink]
    argv += ["--group", f"{settings.topic_prefix}{program}", "--datadir", str(settings.data_dir)]
    children.start(kind, argv).wait_for_log(f"{program} ready", READY_S)


class _Sender:
    """Sends an encoded no-op Task per id, with the TaskClient's producer configuration."""

    def __init__(self, settings: Settings, topic: str, plan: BenchPlan) -> None:
        self.topic = topic
        self.plan = plan
        self.codec = Codec()
        # librdkafka's own lines to the logger, as the client's (not raw to the terminal)
        self.producer = Producer(producer_config(settings))

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.producer.flush(10)

    def send(self, key: str) -> None:
        task = Task(
            task_id=key,
            type=TASK_TYPE,
            priority=PRIORITY,
            payload=PAYLOAD,
            submitted_at=time.time_ns() // 1_000_000,
        )
        value = self.codec.encode(task)
        while True:
            try:
                self.producer.produce(self.topic, value, key.encode())
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self) -> None:
        if self.producer.flush(self.plan.timeout_s):
            raise BenchError(f"{self.topic}: records unconfirmed after {self.plan.timeout_s} s")


def _paced(
    sender: _Sender,
    seen: Observer,
    sink: str,
    plan: BenchPlan,
    progress: Progress,
    kind: str,
    rates: Sequence[float] | None,
    best_tps: float,
) -> list[dict[str, Any]]:
    wanted = rates if rates is not None else [best_tps * f for f in plan.fractions]
    points = []
    for rate in wanted:
        count = paced_count(rate, plan.paced_seconds, plan.tasks)
        progress(f"floor {kind}: {count:,} records paced at {rate:,.0f}/s")
        keys = run_ids(count, f"r{rate:g}")
        due = paced(sender.send, sender.flush, keys, rate)
        arrived = seen.wait_for(sink, set(keys), plan.timeout_s)
        points.append(asdict(latency(due, arrived, rate)))
    return points
