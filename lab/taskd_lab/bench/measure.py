"""What every benchmark run measures, the same way for our pipeline and for the floor.

A run sends ``n`` records keyed by a unique id, either as fast as the producer allows (a
*blast*, for throughput) or open-loop at a fixed rate (*paced*, for latency). An
:class:`Observer` (a confluent-kafka consumer in a thread of this process) reads the output
topics and notes when each key first arrived. Both clocks are this process's
``time.monotonic()``, so a latency is "seen by a consumer" minus "sent": it includes the last
hop to a consumer, exactly as Kafka's own produce-to-consume floor does. A throughput is the
whole run, first record sent to the last one out, with no window cut out of it: the peers are
counted the same way (:mod:`taskd_lab.bench.peers`).

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

from streams.settings import Settings
from taskd_lab.bench.procs import BenchError

TIMESTAMP_S = 0.001
"""Kafka record timestamps are whole milliseconds: no span is timed as shorter."""
Send = Callable[[str], None]
"""Sends one record keyed by the given id (asynchronously)."""
Flush = Callable[[], None]


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
    """Records over the whole run: from its start to the last record's end."""

    count: int
    tps: float
    seconds: float


Keys = Callable[[Message], list[str]]
"""The ids a record carries (a batch record carries several): by default its key. Called once
per record in the observer's thread, under its lock: it may note whatever else its caller
wants from the record, decoded once."""


def record_key(message: Message) -> list[str]:
    return [(message.key() or b"").decode()]


@dataclass
class Observer:
    """Reads ``topics`` from their beginning in a thread; first arrival time of each key."""

    settings: Settings
    topics: tuple[str, ...]
    keys_of: Keys = record_key
    arrivals: dict[str, dict[str, float]] = field(default_factory=dict)
    stamps: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each key's Kafka record timestamp (when its writer produced it, or when the broker
    appended it on a topic with LogAppendTime), in s."""
    order: dict[str, list[str]] = field(default_factory=dict)
    """The keys of each topic in the order they first arrived (waits read only what is new)."""
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
        self.order = {topic: [] for topic in self.topics}
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
                self.order[topic].append(key)

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
        """Arrival times of every key in ``keys``; BenchError once none of those missing has
        come for ``timeout_s`` (a long run that progresses is waited for)."""
        pending, read, progress_at = set(keys), 0, time.monotonic()
        while True:
            with self._lock:
                new = self.order[topic][read:]
            read += len(new)
            missing = len(pending)
            pending.difference_update(new)
            if not pending:
                return self.arrived(topic, keys)
            if self._error is not None:
                raise BenchError(f"observer on {topic}: {self._error}")
            if len(pending) < missing:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at > timeout_s:
                raise BenchError(
                    f"{topic}: {len(pending)} of {len(keys)} records missing, none new "
                    f"for {timeout_s:g} s"
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


def throughput(started: float, ended: Iterable[float]) -> Throughput:
    """Every record from ``started`` to the last of ``ended`` (one clock, in seconds): the whole
    run, ramp-up and tail included, counted alike for every system of the report."""
    times = list(ended)
    if not times:
        raise BenchError("no record arrived: no throughput to measure")
    span = max(max(times) - started, TIMESTAMP_S)
    return Throughput(count=len(times), tps=len(times) / span, seconds=span)


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
