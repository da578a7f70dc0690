"""What a throughput run costs: CPU time per process and Kafka records per topic.

CPU is psutil's user + system time of each process (children not included: the dispatcher
and each agent are one process each), read before and after the run. The broker is the
``java`` process whose command line names ``kafka.Kafka``: every client of that broker counts
in its figure, the benchmark's own and anyone else's. The benchmark process itself is the
producer and also runs the observer (and the RSS sampler), so its figure covers all three.

Records are the sum of the high watermarks of each family of our topics (``tasks.p*``,
``dispatch``, ``results``...), read before and after the run: every record written to it,
whoever wrote it (a compacted topic's offsets count what was appended, not what is kept).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import psutil
from confluent_kafka import Consumer, TopicPartition

from streams.settings import Settings
from streams.wire.topics import TopicNames
from taskd_lab.bench.procs import BenchError

BROKER_MARK = "kafka.Kafka"
"""In the broker's command line: the main class of a Kafka broker started by Java."""
BENCH = "bench"
"""The name of the benchmark process (producer and observer) among the measured ones."""
BROKER = "broker"
_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds used so far per process name, records written so far per topic family."""

    cpu_s: dict[str, float]
    records: dict[str, int]


def topic_families(topics: TopicNames) -> dict[str, list[str]]:
    """Our topics that tasks go through, grouped as the report shows them."""
    return {
        "tasks.p*": topics.all_tasks(),
        "dispatch": [topics.dispatch],
        "results": [topics.results],
        "dispatcher-state": [topics.state],
        "events": [topics.events],
        "dlq": [topics.dlq],
        "retry.*": topics.all_retries(),
    }


def broker_pid() -> int | None:
    """The local Kafka broker's pid; None when none runs here (a broker in a container)."""
    for process in psutil.process_iter(["cmdline"]):
        if BROKER_MARK in " ".join(process.info["cmdline"] or ()):
            return int(process.pid)
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` itself so far (not of its children)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error as error:
        raise BenchError(f"cannot read the CPU time of pid {pid}: {error}") from error
    return float(times.user + times.system)


class CostMeter:
    """Reads the :class:`Usage` of some processes (plus the broker and this process) and of
    one prefix's topics."""

    def __init__(self, settings: Settings, pids: Mapping[str, int]) -> None:
        broker = broker_pid()
        self.pids = {**pids, BENCH: os.getpid()} | ({BROKER: broker} if broker else {})
        self.families = topic_families(settings.topics)
        self.consumer = Consumer(
            {**settings.kafka_config(), "group.id": f"bench-cost-{uuid.uuid4().hex[:8]}"}
        )

    def __enter__(self) -> CostMeter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.consumer.close()

    def read(self) -> Usage:
        return Usage(cpu_s=self.cpu(), records=self.records())

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process."""
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def records(self) -> dict[str, int]:
        """Records written so far to each topic family."""
        return {
            family: sum(self._written(topic) for topic in topics)
            for family, topics in self.families.items()
        }

    def _written(self, topic: str) -> int:
        metadata = self.consumer.list_topics(topic, timeout=_TIMEOUT_S).topics[topic]
        if metadata.error is not None:
            raise BenchError(f"topic {topic}: {metadata.error}")
        return sum(
            self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_TIMEOUT_S)[1]
            for p in metadata.partitions
        )


def cpu_ms_per_task(before: Usage, after: Usage, tasks: int) -> dict[str, float]:
    """CPU milliseconds per task of each process between two readings."""
    return {name: (after.cpu_s[name] - before.cpu_s[name]) * 1000 / tasks for name in after.cpu_s}


def records_per_task(before: Usage, after: Usage, tasks: int) -> dict[str, float]:
    """Records written per task to each topic family between two readings."""
    return {name: (after.records[name] - before.records[name]) / tasks for name in after.records}
