"""The dispatcher's durable state, per shard, and its changelog.

A task needs durable state once it has left its input record: when it is dispatched, its input
offset may be committed, so from then on only the state says it exists. Each shard keeps

- its *open tasks*: task id -> :class:`TaskState` (the task, and the agent running it or None
  when it waits again for a slot after a failover), keyed ``t:<task id>`` in the changelog;
- its *ended tasks*: the dedupe keys of tasks completed or dead-lettered, one
  :class:`EndedTasks` record per checkpoint, keyed ``e:<sequence>``, so a task read again after a
  restart is dropped. The oldest records are deleted once the shard holds more than the
  dedupe window.

The changelog ``<prefix>dispatcher-state`` is compacted and has one partition per shard. Changes
are only noted as they happen; a checkpoint (``checkpoint.py``) turns them into records, *net*.
A dispatched task gets its record only once it has been in flight through a whole checkpoint
interval: until then its input record backs it (it is not committed past), so the many tasks
that run for less than that write no state at all; one that runs longer writes one record, and
its deletion one more when it ends. A task that has a record already (queued again after a
failover, then dispatched again), or that was preempted (its input does not hold the count),
is written at the next checkpoint. A restart reads the shard's partition back
(:func:`read_shards`).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.adapters.admin import topic_partitions
from streams.adapters.dispatcher.origin import Origin
from streams.adapters.kafka import client_config, make_consumer, read_ranges, watermarks
from streams.core.actions import Dispatch, Requeued
from streams.core.model import Job
from streams.errors import DecodeError, TopicError
from streams.settings import Settings
from streams.wire import EndedTasks, TaskState
from streams.wire.codec import RecordCodec
from streams.wire.topics import REPORTS_SEGMENT_MS

log = logging.getLogger(__name__)

OPEN_PREFIX = b"t:"
ENDED_PREFIX = b"e:"
_TIMEOUT_S = 30.0
RESULTS_READ_BACK_MOST = 50_000
RESULTS_READ_BACK_S = 20.0
"""A recovery reads at most this many results records per partition, within this long: the
results since the last commit are a checkpoint interval's worth, except for a group that never
committed on an old topic (the intake reads them anyway, later)."""


def changelog_topic(settings: Settings) -> str:
    """The dispatcher's state changelog: ``<prefix>dispatcher-state``."""
    return settings.topics.state


def group_id(settings: Settings) -> str:
    """The dispatcher's consumer group: ``<prefix>dispatcher``."""
    return f"{settings.topic_prefix}dispatcher"


Change = Dispatch | Requeued | None
"""What happened to an open task since the last checkpoint: (re)dispatched, queued again after a
failover, or ended (None)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One changelog record to write: key, value (None: a tombstone)."""

    key: bytes
    value: bytes | None


@dataclass(slots=True)
class ShardState:
    """One shard's changes since the last checkpoint, and what its changelog holds."""

    shard: int
    changes: dict[str, Change] = field(default_factory=dict)
    fresh: set[str] = field(default_factory=set)
    """Tasks dispatched since the last checkpoint, still backed by their input record."""
    ended: list[str] = field(default_factory=list)
    """Dedupe keys ended since the last checkpoint."""
    written: set[str] = field(default_factory=set)
    """Open tasks whose record is in the changelog."""
    buckets: deque[tuple[int, int]] = field(default_factory=deque)
    """(sequence, keys) of the ended-task records in the changelog, oldest first."""
    next_bucket: int = 0

    def note(self, task_id: str, change: Change) -> None:
        """A task was dispatched, queued again, or ended (None)."""
        self.changes[task_id] = change
        if isinstance(change, Dispatch):
            self.fresh.add(task_id)
        else:
            self.fresh.discard(task_id)

    def drain(
        self,
        codec: RecordCodec,
        *,
        now_ms: int,
        window: int,
        final: bool = False,
        ended: bool = True,
    ) -> list[Record]:
        """The records that bring the changelog up to date, net; tasks dispatched since the last
        checkpoint wait for the next one, unless ``final``. The input record of a task written
        is finished (its state backs it now). Without ``ended``, the open tasks only: no ended
        keys' record, whose key another instance may be writing too."""
        changes, self.changes = self.changes, {}
        fresh, self.fresh = self.fresh, set()
        out = []
        for task_id, change in changes.items():
            if (
                isinstance(change, Dispatch)
                and task_id in fresh
                and not final
                and self._input_says_all(task_id, change.job)
            ):
                self.changes[task_id] = change  # its input still backs it: next time
                continue
            record = self._open_record(task_id, change, codec)
            if record is not None:
                out.append(record)
        if not ended:
            return out
        if self.ended:
            out.append(self._ended_record(codec, now_ms))
        while len(self.buckets) > 1 and sum(count for _, count in self.buckets) > window:
            sequence, _ = self.buckets.popleft()
            out.append(Record(_bucket_key(sequence), None))
        return out

    def _input_says_all(self, task_id: str, job: Job) -> bool:
        """The task's input record holds all there is to know of it: it has no record of its
        own (which would say otherwise), and no preemption count (which the input lacks)."""
        return task_id not in self.written and not job.preempted

    def _open_record(self, task_id: str, change: Change, codec: RecordCodec) -> Record | None:
        key = OPEN_PREFIX + task_id.encode()
        if change is None:
            if task_id not in self.written:
                return None  # opened and ended between two checkpoints: nothing to write
            self.written.discard(task_id)
            return Record(key, None)
        origin = change.job.ref
        assert isinstance(origin, Origin)
        if (
            isinstance(change, Requeued)
            and origin.tracker is not None
            and self._input_says_all(task_id, change.job)
        ):
            return None  # queued again before it needed a record: its input still backs it
        self.written.add(task_id)
        origin.finish_input()
        return Record(key, codec.encode(task_state(change, self.shard)))

    def _ended_record(self, codec: RecordCodec, now_ms: int) -> Record:
        keys, self.ended = self.ended, []
        sequence = self.next_bucket
        self.next_bucket += 1
        self.buckets.append((sequence, len(keys)))
        return Record(
            _bucket_key(sequence), codec.encode(EndedTasks(keys=tuple(keys), ended_at=now_ms))
        )


def task_state(change: Dispatch | Requeued, shard: int) -> TaskState:
    """The durable record of an open task after ``change``."""
    job = change.job
    origin = job.ref
    assert isinstance(origin, Origin)
    task = origin.task_at(job.attempt)
    if isinstance(change, Requeued):
        return TaskState(task=task, shard=shard, preempted=job.preempted)
    return TaskState(
        task=task,
        shard=shard,
        agent_id=change.agent_id,
        epoch=change.epoch,
        dispatched_at=change.dispatched_ms,
        lease_ms=change.lease_ms,
        preempted=job.preempted,
    )


def _bucket_key(sequence: int) -> bytes:
    return ENDED_PREFIX + f"{sequence:012d}".encode()


# --- reading back ---------------------------------------------------------------------------


@dataclass(slots=True)
class Recovered:
    """What one shard's changelog held."""

    shard: int
    open: list[TaskState] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    """Dedupe keys, oldest first."""
    state: ShardState | None = None


def read_shards(settings: Settings, codec: RecordCodec, shards: Iterable[int]) -> list[Recovered]:
    """Read the changelog partitions of ``shards`` to their current end (blocking)."""
    topic = changelog_topic(settings)
    consumer = make_consumer(
        settings,
        group_id=f"{group_id(settings)}.recovery.{uuid.uuid4().hex}",
        extra={"enable.partition.eof": True, "auto.offset.reset": "earliest"},
    )
    try:
        ranges = {
            shard: watermarks(consumer, topic, shard, timeout_s=_TIMEOUT_S) for shard in shards
        }
        messages = read_ranges(consumer, topic, ranges, within_s=10 * _TIMEOUT_S)
        found = []
        for shard in ranges:
            latest: dict[bytes, bytes | None] = {}
            for message in messages[shard]:
                latest[message.key() or b""] = message.value()
            found.append(_recovered(shard, latest, codec))
        return found
    finally:
        consumer.close()


def results_since_commit(settings: Settings, shards: Iterable[int]) -> list[tuple[int, bytes]]:
    """(partition, value) of the ``results`` records of ``shards`` the dispatcher's group has
    not committed yet, to their current end (blocking). A recovery hands them to the core
    before any input: a lease whose run ended is settled by its result even if its agent
    restarted meanwhile, and a task read again from its input ends with the success of its run
    before the crash."""
    topic = settings.topics.results
    consumer = make_consumer(  # the group's offsets, read without joining it
        settings, group_id=group_id(settings), extra={"enable.partition.eof": True}
    )
    try:
        wanted = [TopicPartition(topic, shard) for shard in shards]
        ranges = {}
        for committed in consumer.committed(wanted, timeout=_TIMEOUT_S):
            low, high = watermarks(consumer, topic, committed.partition, timeout_s=_TIMEOUT_S)
            # none committed: from the start, as the intake will, but never more than a bound
            start = max(low, committed.offset, high - RESULTS_READ_BACK_MOST)
            ranges[committed.partition] = (start, high)
        messages = read_ranges(consumer, topic, ranges, within_s=RESULTS_READ_BACK_S)
        return [
            (partition, message.value() or b"")
            for partition, found in messages.items()
            for message in found
        ]
    finally:
        consumer.close()


def _recovered(shard: int, latest: dict[bytes, bytes | None], codec: RecordCodec) -> Recovered:
    found = Recovered(shard)
    state = found.state = ShardState(shard)
    buckets: list[tuple[int, EndedTasks]] = []
    for key, value in latest.items():
        if value is None:
            continue
        try:
            if key.startswith(OPEN_PREFIX):
                found.open.append(codec.decode(value, TaskState))
                state.written.add(key[len(OPEN_PREFIX) :].decode())
            elif key.startswith(ENDED_PREFIX):
                buckets.append((int(key[len(ENDED_PREFIX) :]), codec.decode(value, EndedTasks)))
        except (DecodeError, ValueError) as error:
            log.error(
                "state changelog record %r of shard %d is unreadable, skipped: %s",
                key,
                shard,
                error,
            )
    for sequence, record in sorted(buckets, key=lambda item: item[0]):
        found.ended += record.keys
        state.buckets.append((sequence, len(record.keys)))
        state.next_bucket = sequence + 1
    return found


def create_dispatcher_topics(settings: Settings) -> int:
    """Create the topics the dispatcher writes, if they are missing (a deployment whose topics
    were created by an older version): the state changelog (``settings.shards`` partitions),
    the instances' reports (one) and the replies (``settings.shards``). Returns how many
    partitions the replies topic has: a task asking for an outcome on another is answered
    with none. Only missing topics are asked for: a dispatcher whose credential may not create
    topics starts once they exist (docs/operations.md, *Security*)."""
    admin = AdminClient(client_config(settings))
    existing = topic_partitions(admin)
    compacted = {"cleanup.policy": "compact"}
    topics = [
        NewTopic(changelog_topic(settings), num_partitions=settings.shards,
                 replication_factor=settings.replication_factor, config=compacted),
        NewTopic(settings.topics.dispatchers, num_partitions=1,
                 replication_factor=settings.replication_factor,
                 config={**compacted, "segment.ms": str(REPORTS_SEGMENT_MS)}),
        NewTopic(settings.topics.replies, num_partitions=settings.shards,
                 replication_factor=settings.replication_factor,
                 config={"retention.ms": str(settings.retention_ms)}),
    ]  # fmt: skip
    topics = [topic for topic in topics if topic.topic not in existing]
    if not topics:
        return existing.get(settings.topics.replies, 0)
    for name, future in admin.create_topics(topics, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise TopicError(f"cannot create {name}: {error.args[0].str()}") from error
    return topic_partitions(admin).get(settings.topics.replies, 0)
