"""The dispatcher's inputs: the task topics, the retry tiers and ``results``, read in batches.

One consumer in the group ``<prefix>dispatcher`` reads them all. A thread of its own waits for
records (librdkafka releases the GIL while it waits) and hands what arrived to the event loop as
one batch: one wake-up of the loop per batch, not per record. The loop owns everything else, so
the dispatcher's state is touched by one thread only.

Partitions are assigned by Kafka's ``range`` assignor, which gives one member partition ``i`` of
every input topic (they all have ``shards`` partitions): a shard's tasks, retries and results are
read by the same instance. The rebalance callbacks run on this thread and wait for the loop: an
assignment is recovered from the state changelog before the first record of it is handed over,
and a revoked shard is checkpointed before it is given up.

Offsets are committed only by the checkpoint (``checkpoint.py``), never automatically. Every
call on the consumer is made by this thread: a commit asked for by the loop waits in a queue for
the next turn (at most ``POLL_S``); librdkafka blocks a commit made from another thread while
the consumer is closing.

Back-pressure is exact: the loop may hold at most ``max_held`` tasks (:class:`TaskBudget`). Task
records beyond what it may still take are given back: their partitions are paused and set back
to the first record given back, so Kafka keeps them until the held tasks drain to
``resume_at``. Retries and results always flow.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streams.adapters.kafka import make_consumer
from streams.errors import KafkaError
from streams.settings import Settings

log = logging.getLogger(__name__)

BATCH_MAX = 2_000
"""Records handed to the loop at most at once."""
POLL_S = 0.1
"""Longest wait for the first record (also how often a stop request is noticed)."""
QUEUED_KBYTES = 16_384
"""librdkafka's read-ahead buffer for all partitions together (its default is 64 MiB): with
100K tasks held, a fuller buffer would only cost memory."""
REBALANCE_WAIT_S = 120.0
"""Longest wait for the loop to recover or checkpoint shards in a rebalance."""

Batch = list[Message]
Shards = list[int]
T = TypeVar("T")


def consumer_config(session_timeout_ms: int, instance_id: str | None = None) -> dict[str, Any]:
    """The input consumer's keys (besides connection and group); ``instance_id``: static
    membership (``group.instance.id``), so that an instance restarted within the session gets
    its shards back without a rebalance of the others."""
    static = {} if instance_id is None else {"group.instance.id": instance_id}
    return {
        **static,
        "partition.assignment.strategy": "range",
        "auto.offset.reset": "earliest",
        "enable.auto.offset.store": False,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(100, session_timeout_ms // 10),
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": QUEUED_KBYTES,
    }


class TaskBudget:
    """How many task records the loop may still be handed: ``max_held`` minus what it holds and
    what is on its way to it. Shared by the intake thread and the loop (a lock guards it)."""

    def __init__(self, max_held: int, resume_at: int) -> None:
        self._max_held = max_held
        self._resume_at = resume_at
        self._held = 0
        self._in_transit = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> tuple[int, bool]:
        """(intake thread) How many of ``wanted`` task records may go (counted on their way),
        and whether that uses the budget up."""
        with self._lock:
            room = self._max_held - self._held - self._in_transit
            granted = max(0, min(wanted, room))
            self._in_transit += granted
            return granted, granted >= room

    def handled(self, records: int, held: int) -> None:
        """(loop) ``records`` task records were handled; the loop holds ``held`` tasks now."""
        with self._lock:
            self._in_transit -= records
            self._held = held

    def may_resume(self) -> bool:
        """Whether paused task topics may be read again: the held tasks drained."""
        with self._lock:
            return self._held + self._in_transit <= self._resume_at


class Intake:
    """Reads the input topics in a thread; batches and rebalances go to the loop.

    ``on_batch(messages)`` runs on the loop for every batch. ``on_assigned(shards)`` and
    ``on_revoked(shards, lost)`` are coroutines run on the loop while this thread waits for
    them; ``lost``: the shards were taken away (the session ran out), not handed over, so no
    offset of theirs may be committed any more. ``on_revoked`` gives the offsets to commit
    before the shards go. ``on_failure()`` runs on the loop if the thread stops by itself (the
    dispatcher then stops: one that reads nothing must not look alive).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        session_timeout_ms: int,
        instance_id: str | None = None,
        budget: TaskBudget,
        loop: asyncio.AbstractEventLoop,
        on_batch: Callable[[Batch], None],
        on_assigned: Callable[[Shards], Awaitable[None]],
        on_revoked: Callable[[Shards, bool], Awaitable[list[TopicPartition]]],
        on_failure: Callable[[], None],
    ) -> None:
        topics = settings.topics
        self._topics = [*topics.all_tasks(), *topics.all_retries(), topics.results, topics.cancels]
        self._task_topics = frozenset(topics.all_tasks())
        self._loop = loop
        self._budget = budget
        self._on_batch = on_batch
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_failure = on_failure
        self.consumer: Consumer = make_consumer(
            settings, group_id=group_id, extra=consumer_config(session_timeout_ms, instance_id)
        )
        self._stopping = threading.Event()
        self._asked: deque[Callable[[], None]] = deque()
        """Calls on the consumer the loop asked for, made by this thread."""
        self._paused: list[TopicPartition] = []
        self._shards: set[int] = set()
        self._thread = threading.Thread(target=self._serve, name="taskd-intake", daemon=True)
        self.failure: BaseException | None = None
        """What stopped the thread, if it stopped by itself."""

    def start(self) -> None:
        self.consumer.subscribe(
            self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop reading and leave the group; the revoke callback checkpoints what is owned
        (it needs the loop, hence awaited)."""
        self._stopping.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, REBALANCE_WAIT_S)

    @property
    def shards(self) -> frozenset[int]:
        """The shards this instance owns now."""
        return frozenset(self._shards)

    @property
    def paused(self) -> bool:
        """Whether the task topics are paused (back-pressure)."""
        return bool(self._paused)

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Commit ``offsets`` (the next offset to read of each partition), asynchronously."""
        if offsets:
            self._asked.append(lambda: self._commit(offsets, wait=False))

    # --- the thread ----------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                while self._asked:
                    self._asked.popleft()()
                if self._paused and self._budget.may_resume():
                    self._resume()
                batch = self._take()
                if batch:
                    self._loop.call_soon_threadsafe(self._on_batch, batch)
        except BaseException as error:
            self.failure = error
            log.exception("the dispatcher's input thread stopped")
            self._loop.call_soon_threadsafe(self._on_failure)  # nothing is read any more
        finally:
            self._close()

    def _take(self) -> Batch:
        """What has arrived, returning as soon as one record is there (``consume`` with a
        timeout would wait for a full batch)."""
        first = self.consumer.poll(POLL_S)
        if first is None:
            return []
        messages = [first, *self.consumer.consume(BATCH_MAX - 1, timeout=0)]
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
            elif not error.retriable() and error.fatal():
                raise KafkaError(f"the dispatcher's input consumer failed: {error.str()}")
            else:
                log.warning("reading the inputs: %s", error.str())
        return self._within_budget(good)

    def _within_budget(self, messages: Batch) -> Batch:
        """``messages`` without the task records beyond the budget, which are given back."""
        tasks = sum(1 for message in messages if message.topic() in self._task_topics)
        granted, used_up = self._budget.take(tasks)
        if used_up:
            self._pause()
        if granted == tasks:
            return messages
        kept: Batch = []
        back: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.topic() not in self._task_topics:
                kept.append(message)
            elif granted:
                kept.append(message)
                granted -= 1
            else:
                key = (message.topic() or "", message.partition() or 0)
                back.setdefault(key, message.offset() or 0)
        for (topic, partition), offset in back.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))
        return kept

    def _pause(self) -> None:
        if self._paused:
            return
        parts = [tp for tp in self.consumer.assignment() if tp.topic in self._task_topics]
        if parts:
            self.consumer.pause(parts)
            log.info("task topics paused: the scheduler holds its maximum")
        self._paused = parts

    def _resume(self) -> None:
        paused, self._paused = self._paused, []
        owned = set(map(_key, self.consumer.assignment()))
        parts = [tp for tp in paused if _key(tp) in owned]
        if parts:
            self.consumer.resume(parts)
            log.info("task topics resumed")

    def _commit(self, offsets: list[TopicPartition], *, wait: bool) -> None:
        try:
            if wait:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            log.warning("commit of the input offsets failed (the next one covers it): %s", error)

    def _close(self) -> None:
        while self._asked:  # what the loop asked for before the stop, commits included
            self._asked.popleft()()
        try:
            self.consumer.close()  # leaves the group: on_revoke runs for what is owned
        except (KafkaException, RuntimeError) as error:
            log.warning("closing the input consumer: %s", error)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        shards = sorted({tp.partition for tp in partitions} - self._shards)
        if shards:
            self._wait_for(self._on_assigned(shards), f"recover shards {shards}")
            self._shards.update(shards)
        if self._paused:
            tasks = [tp for tp in partitions if tp.topic in self._task_topics]
            consumer.pause(tasks)
            self._paused += tasks

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._give_up(partitions, lost=False)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._give_up(partitions, lost=True)

    def _give_up(self, partitions: list[TopicPartition], *, lost: bool) -> None:
        shards = sorted({tp.partition for tp in partitions} & self._shards)
        if shards:
            what = f"{'drop lost' if lost else 'checkpoint'} shards {shards}"
            offsets = self._wait_for(self._on_revoked(shards, lost), what)
            if offsets:
                self._commit(offsets, wait=True)
            self._shards.difference_update(shards)

    def _wait_for(self, work: Awaitable[T], what: str) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(_run(work), self._loop)
        try:
            return future.result(REBALANCE_WAIT_S)
        except Exception as error:
            log.error("could not %s in a rebalance: %s", what, error)
            raise


async def _run(work: Awaitable[T]) -> T:
    return await work


def _key(tp: TopicPartition) -> tuple[str, int]:
    return (tp.topic, tp.partition)
