"""What every benchmark run measures, the same way for our pipeline and for the floor.

A run sends ``n`` records keyed by a unique id, either as fast as the producer allows (a
*blast*, for throughput) or open-loop at a fixed rate (*paced*, for latency). An
:class:`Observer` (a confluent-kafka consumer in a thread of this process) reads the output
topics and notes when each key first arrived. Both clocks are this process's
``time.monotonic()``, so a latency is "seen by a consumer" minus "sent": it includes the last
hop to a consumer, exactly as Kafka's own produce-to-consume floor does.

Paced runs are open loop: a record's latency counts from the time it was *due* to be sent,
not when the producer got round to it, so a stalled sender cannot hide a stall
(coordinated omission).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams.bench.procs import BenchError
from streams.settings import Settings

TIMESTAMP_S = 0.001
"""Kafka record timestamps are whole milliseconds: no span is timed as shorter."""
Send = Callable[[str], None]
"""Sends one record keyed by the given id (asynchronously)."""
Flush = Callable[[], None]
THROUGHPUT_WINDOW = (0.1, 0.9)
"""Throughput is measured between the 10th and the 90th percentile of arrivals: the ramp-up
and the tail of a run are not steady state."""


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency of one paced run, in milliseconds, and how many records it covers."""

    rate_tps: float
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    achieved_tps: float
    """The rate the sender actually kept (a sender on a busy machine can fall behind)."""


@dataclass(frozen=True, slots=True)
class Throughput:
    count: int
    tps: float
    seconds: float


Keys = Callable[[Message], list[str]]
"""The ids a record carries (a batch record carries several): by default its key."""


def record_key(message: Message) -> list[str]:
    return [(message.key() or b"").decode()]


@dataclass
class Observer:
    """Reads ``topics`` from their beginning in a thread; first arrival time of each key."""

    settings: Settings
    topics: tuple[str, ...]
    on_message: Callable[[Message], None] | None = None
    keys_of: Keys = record_key
    arrivals: dict[str, dict[str, float]] = field(default_factory=dict)
    stamps: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each key's Kafka record timestamp (CreateTime: when its writer produced it), in s."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: str | None = None

    def __enter__(self) -> Observer:
        consumer = Consumer(
            {
                **self.settings.kafka_config(),
                "group.id": f"bench-observer-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        consumer.assign(_all_partitions(consumer, self.topics))
        self.arrivals = {topic: {} for topic in self.topics}
        self.stamps = {topic: {} for topic in self.topics}
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name="bench-observer", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                messages = take(consumer)
                now = time.monotonic()
                with self._lock:
                    for message in messages:
                        self._note(message, now)
        finally:
            consumer.close()

    def _note(self, message: Message, now: float) -> None:
        if message.error() is not None:
            self._error = str(message.error())
            return
        topic = message.topic() or ""
        seen = self.arrivals[topic]
        stamp = message.timestamp()[1] / 1000
        for key in self.keys_of(message):
            if key not in seen:
                seen[key] = now
                self.stamps[topic][key] = stamp
        if self.on_message is not None:
            self.on_message(message)

    def arrived(self, topic: str, keys: Iterable[str]) -> dict[str, float]:
        """Arrival times of those of ``keys`` seen on ``topic`` so far."""
        with self._lock:
            seen = self.arrivals[topic]
            return {key: seen[key] for key in keys if key in seen}

    def written(self, topic: str, keys: Iterable[str]) -> dict[str, float]:
        """Record timestamps (s since the epoch) of those of ``keys`` seen on ``topic``."""
        with self._lock:
            stamps = self.stamps[topic]
            return {key: stamps[key] for key in keys if key in stamps}

    def wait_for(self, topic: str, keys: set[str], timeout_s: float) -> dict[str, float]:
        """Arrival times of every key in ``keys``; BenchError if some miss ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.arrived(topic, keys)
            if len(found) == len(keys):
                return found
            if self._error is not None:
                raise BenchError(f"observer on {topic}: {self._error}")
            if time.monotonic() > deadline:
                missing = len(keys) - len(found)
                raise BenchError(
                    f"{topic}: {missing} of {len(keys)} records missing after {timeout_s:g} s"
                )
            time.sleep(0.05)


def take(consumer: Consumer, most: int = 1000) -> list[Message]:
    """What has arrived, returning as soon as one record is there. (``consume`` with a timeout
    waits the whole timeout unless ``most`` records came: tens of ms added to every latency.)"""
    first = consumer.poll(0.1)
    if first is None:
        return []
    return [first, *consumer.consume(most - 1, timeout=0)]


def _all_partitions(consumer: Consumer, topics: Iterable[str]) -> list[TopicPartition]:
    wanted = []
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None or not metadata.partitions:
            raise BenchError(f"topic {topic} is not there: {metadata.error}")
        wanted += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
    return wanted


def run_ids(count: int, label: str) -> list[str]:
    """``count`` unique keys for one run."""
    tag = uuid.uuid4().hex[:6]
    return [f"{label}-{tag}-{i}" for i in range(count)]


def blast(send: Send, flush: Flush, ids: list[str]) -> dict[str, float]:
    """Send every id as fast as the producer takes them; the send time of each."""
    sent: dict[str, float] = {}
    for key in ids:
        sent[key] = time.monotonic()
        send(key)
    flush()
    return sent


def paced(send: Send, flush: Flush, ids: list[str], rate_tps: float) -> dict[str, float]:
    """Send one id every ``1/rate`` s (open loop); the time each was *due*."""
    due: dict[str, float] = {}
    start = time.monotonic() + 0.05
    for i, key in enumerate(ids):
        at = start + i / rate_tps
        wait = at - time.monotonic()
        if wait > 0.0005:
            time.sleep(wait)
        due[key] = at
        send(key)
    flush()
    return due


def throughput(arrivals: Iterable[float]) -> Throughput:
    """Steady rate of ``arrivals`` (between the 10th and 90th percentile of them), any clock
    in seconds."""
    times = sorted(arrivals)
    if len(times) < 10:
        raise BenchError(f"too few records ({len(times)}) to measure a throughput")
    low, high = (round(q * (len(times) - 1)) for q in THROUGHPUT_WINDOW)
    span = max(times[high] - times[low], TIMESTAMP_S)
    return Throughput(count=len(times), tps=(high - low) / span, seconds=times[-1] - times[0])


def latency(sent: Mapping[str, float], arrived: Mapping[str, float], rate_tps: float) -> Latency:
    """Percentiles of ``arrived - sent`` over the keys present in both, in ms."""
    values = sorted((arrived[key] - sent[key]) * 1000 for key in sent if key in arrived)
    if not values:
        raise BenchError("no record arrived: no latency to measure")
    times = sorted(sent.values())
    span = times[-1] - times[0]
    achieved = (len(times) - 1) / span if span > 0 else rate_tps
    return Latency(
        rate_tps=rate_tps,
        count=len(values),
        p50_ms=percentile(values, 0.50),
        p99_ms=percentile(values, 0.99),
        max_ms=values[-1],
        achieved_tps=achieved,
    )


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def paced_count(rate_tps: float, seconds: float, most: int, least: int = 100) -> int:
    """Records in a paced run of about ``seconds`` at ``rate_tps`` (bounded both ways)."""
    return max(least, min(most, round(rate_tps * seconds)))
