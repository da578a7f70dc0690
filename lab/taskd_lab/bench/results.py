"""Results back to the producer: the ``results`` section of ``taskd bench``.

A paced run through the pipeline (``plan.agents`` agents, the no-op handler) whose client waits
for results (``TaskClient(results=True)``): each task names the client's partition of
``replies``, the dispatcher writes its outcome there when it ends, and the client's reader
resolves the task's handle. Per task, on this machine's wall clock:

- *written → caller*: from the outcome's ``ended_at`` (the dispatcher settled the task and
  writes the outcome in the same pass, so this counts the write, the broker and the read) to
  the moment the handle resolves, which is when a caller blocked in ``result()`` wakes;
- *done → caller*: from the agent finishing the task (the result's ``finished_at``): the
  dispatcher's hop included.

The rate is half the sustained rate the ``pipeline`` section found (half load), else
DEFAULT_RATE_TPS; ``ended_at`` and ``finished_at`` are whole milliseconds of the wall clock
(truncated), counted mid-way.

Then the same hop alone, at the same rate, with nothing of the pipeline running: outcomes
written to a ``replies`` partition by a producer configured as the dispatcher's (idempotent,
acks=all, linger 0, no Nagle), each stamped ``ended_at`` just before it is encoded and sent as the
dispatcher does, read by the client's own :class:`~streams.adapters.replies.ReplyReader`.
What is left of *written → caller* there is Kafka, the reader and this machine at that moment:
the floor under the pipeline's figure. The 1-minute load average before and after each run is
kept beside the figures, since other work on the machine moves them most.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from concurrent import futures
from typing import Any

from streams.adapters.admin import create_topics, delete_groups, delete_topics
from streams.adapters.client import TaskClient
from streams.adapters.kafka import BATCHED_BY_CALLER, codec_for, make_producer, now_ms
from streams.adapters.replies import ReplyReader
from streams.wire import OutcomeStatus, TaskOutcome
from taskd_lab.bench.measure import paced, paced_count, percentile, run_ids
from taskd_lab.bench.ours import bench_task, running_pipeline
from taskd_lab.bench.plan import TASK_TYPE, BenchPlan, Progress, section_settings
from taskd_lab.bench.procs import BenchError

DEFAULT_RATE_TPS = 500.0
HALF_MS = 0.5


class _Arrivals:
    """When each handle resolved (wall clock, ms), noted by the client's reader thread."""

    def __init__(self, expected: int) -> None:
        self.at: dict[str, tuple[float, TaskOutcome]] = {}
        self._lock = threading.Lock()
        self.all_in = threading.Event()
        self.expected = expected

    def note(self, future: futures.Future[TaskOutcome]) -> None:
        at_ms = time.time() * 1000
        outcome = future.result()
        with self._lock:
            self.at.setdefault(outcome.task_id, (at_ms, outcome))
            if len(self.at) >= self.expected:
                self.all_in.set()

    def wait(self, what: str, timeout_s: float) -> None:
        """Until every outcome has arrived; BenchError after ``timeout_s``."""
        if not self.all_in.wait(timeout_s):
            raise BenchError(f"{what}: {self.expected - len(self.at)} outcomes never arrived")


def run_results(plan: BenchPlan, progress: Progress, sustained_tps: float | None) -> dict[str, Any]:
    """The paced run, its two latencies, and the same hop alone (see the module docstring)."""
    rate = sustained_tps / 2 if sustained_tps else DEFAULT_RATE_TPS
    ids = run_ids(paced_count(rate, plan.paced_seconds, plan.tasks), "results")
    progress(f"results: {len(ids):,} tasks at {rate:,.0f}/s, each waited for by its producer")
    arrivals = _Arrivals(len(ids))
    load_before = _load()
    with (
        running_pipeline(plan, "results", observe=False) as pipeline,
        TaskClient(pipeline.run.settings, results=True) as client,
    ):

        def send(task_id: str) -> None:
            client.submit(bench_task(task_id)).waits.add_done_callback(arrivals.note)

        paced(send, lambda: client.flush(plan.timeout_s), ids, rate)
        arrivals.wait("results", plan.timeout_s)
    load_after = _load()
    outcomes = list(arrivals.at.values())
    return {
        "rate_tps": rate,
        "tasks": len(ids),
        "succeeded": sum(outcome.succeeded for _, outcome in outcomes),
        "written_to_caller_ms": _spread(at - o.ended_at - HALF_MS for at, o in outcomes),
        "done_to_caller_ms": _spread(
            at - (o.finished_at or o.ended_at) - HALF_MS for at, o in outcomes
        ),
        "load_1m": [load_before, load_after],
        "alone": _reply_hop_alone(plan, progress, rate, len(ids)),
    }


def _reply_hop_alone(
    plan: BenchPlan, progress: Progress, rate: float, count: int
) -> dict[str, Any]:
    """Outcomes written as the dispatcher writes them and read by the client's reader, with no
    pipeline running: written → caller of Kafka and the reader alone."""
    progress(f"results: the reply hop alone, {count:,} outcomes at {rate:,.0f}/s")
    settings = section_settings(plan, "results-alone")
    create_topics(settings)
    codec = codec_for(settings)
    topic = settings.topics.replies
    ids = run_ids(count, "alone")
    arrivals = _Arrivals(len(ids))
    reader = ReplyReader(settings, codec, partition=0)
    producer = make_producer(settings, BATCHED_BY_CALLER)  # as the dispatcher's
    load_before = _load()
    try:
        reader.start()

        def send(task_id: str) -> None:
            reader.expect(task_id).add_done_callback(arrivals.note)
            ended = now_ms()  # as Effects._reply: stamped, encoded, sent
            outcome = TaskOutcome(
                task_id=task_id,
                type=TASK_TYPE,
                status=OutcomeStatus.SUCCEEDED,
                attempts=1,
                submitted_at=ended,
                ended_at=ended,
            )
            producer.produce(topic, codec.encode(outcome), task_id.encode(), partition=0)
            producer.poll(0)

        def flush() -> None:
            if producer.flush(plan.timeout_s):
                raise BenchError(f"results: outcomes unconfirmed after {plan.timeout_s:g} s")

        paced(send, flush, ids, rate)
        arrivals.wait("results alone", plan.timeout_s)
    finally:
        reader.close()
        delete_topics(settings)
        delete_groups(settings)
    outcomes = arrivals.at.values()
    return {
        "written_to_caller_ms": _spread(at - o.ended_at - HALF_MS for at, o in outcomes),
        "load_1m": [load_before, _load()],
    }


def _load() -> float:
    return os.getloadavg()[0]


def _spread(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 0.5),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1],
    }
