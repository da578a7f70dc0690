"""Outcomes back to the client that submitted the tasks, through one partition of ``replies``.

A client that waits for results reads one partition of ``<prefix>replies`` (picked at random
among the topic's partitions, or the one it is given) and names it in each task it sends
(``REPLY_PARTITION_HEADER``). When the task ends, the dispatcher writes its
:class:`~streams.wire.TaskOutcome` there, keyed by task id. The client reads only that
partition, from its end when the client started: no consumer group, no rebalance, nothing
committed, and nothing to scan. Clients that share a partition read each other's outcomes and
drop them, so give the topic at least as many partitions as clients wait at once. A client given
its partition and a time (``since_ms``) reads from there instead: started again, it gets the
outcomes of its tasks that ended while it was away.

:class:`ReplyReader` is the reading thread; :class:`TaskHandle` is what ``submit`` returns:
``result(timeout)`` blocks, ``await handle`` waits in asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent import futures
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, TopicPartition

from streams.adapters.kafka import (
    check_broker,
    connect_timeout_s,
    end_offset,
    make_consumer,
    offsets_since,
)
from streams.core.window import LruMap
from streams.errors import (
    ConfigError,
    KafkaError,
    ResultTimeoutError,
    TaskdError,
    TaskFailedError,
)
from streams.settings import Settings
from streams.wire import Task, TaskOutcome
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)

T = TypeVar("T")

KEPT_OUTCOMES = 10_000
"""The latest outcomes are kept for a later ``expect`` of their task id."""
_POLL_S = 0.2
_DRAIN = 500
_FETCH_WAIT_MS = 100
"""The broker answers a fetch as soon as an outcome arrives; this only bounds an idle wait."""


class ReplyReader:
    """Reads one partition of the replies topic and resolves the futures of the task ids
    waited for. Thread-safe; ``start`` is called before the first task is sent, or the first
    outcome is waited for."""

    def __init__(
        self,
        settings: Settings,
        codec: RecordCodec,
        *,
        partition: int | None = None,
        since_ms: int | None = None,
        between: Callable[[], object] = lambda: None,
    ) -> None:
        """``since_ms`` (with ``partition``): read from the first outcome written at or after
        that time (ms since the epoch), not from the end, so that a client started again gets
        the outcomes of tasks that ended while it was away. ``between`` runs in the reading
        thread between polls (at least every POLL_S): the client serves its delivery reports
        there, so a task that never reached the broker fails its handle without waiting for
        the next submit."""
        if since_ms is not None and partition is None:
            raise ConfigError(
                "reading outcomes written since a time needs the reply partition they were "
                "written to (reply_partition)"
            )
        self._since_ms = since_ms
        self._settings = settings
        self._between = between
        self._codec = codec
        self._topic = settings.topics.replies
        self._wanted = partition
        self.partition = -1
        """The replies partition read (set by ``start``)."""
        self._lock = threading.Lock()
        self._waiting: dict[str, futures.Future[TaskOutcome]] = {}
        self._recent: LruMap[str, TaskOutcome] = LruMap(KEPT_OUTCOMES)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    def start(self) -> None:
        """Pick the partition and start reading at its end (or at ``since_ms``); idempotent.
        KafkaError if the broker cannot be reached, ConfigError if the replies topic is
        missing."""
        if self._thread is not None or self._stopping.is_set():  # set once, last: no lock
            return
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            group = f"{self._settings.topic_prefix}replies.{uuid.uuid4().hex}"
            wait = {"fetch.wait.max.ms": _FETCH_WAIT_MS}
            consumer = make_consumer(self._settings, group_id=group, extra=wait)
            try:
                self.partition = self._pick(consumer)
                start = self._start_offset(consumer, connect_timeout_s(self._settings))
                consumer.assign([TopicPartition(self._topic, self.partition, start)])
            except BaseException:
                consumer.close()
                raise
            self._consumer = consumer
            thread = threading.Thread(target=self._read, name="taskd-replies", daemon=True)
            thread.start()
            self._thread = thread

    def expect(self, task_id: str) -> futures.Future[TaskOutcome]:
        """The future of ``task_id``'s outcome (already done if it has arrived, failed if the
        reader has stopped)."""
        with self._lock:
            waiting = self._waiting.get(task_id)
            if waiting is not None:
                return waiting
            future: futures.Future[TaskOutcome] = futures.Future()
            arrived = self._recent.get(task_id)
            if arrived is not None:
                future.set_result(arrived)
            elif self._stopping.is_set():
                future.set_exception(KafkaError("the task client's results reader has stopped"))
            else:
                self._waiting[task_id] = future
            return future

    def give_up(self, task_id: str, error: BaseException) -> None:
        """No outcome will come for ``task_id`` (its record was not delivered): its future
        fails with ``error`` and is forgotten."""
        with self._lock:
            future = self._waiting.pop(task_id, None)
        if future is not None:
            future.set_exception(error)

    def close(self) -> None:
        """Stop reading; a task still waited for fails with KafkaError."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._fail_waiting()

    def _pick(self, consumer: Consumer) -> int:
        count = check_broker(
            consumer, self._settings, self._topic, connect_timeout_s(self._settings)
        )
        if self._wanted is None:
            return random.randrange(count)
        if not 0 <= self._wanted < count:
            raise ConfigError(f"{self._topic} has {count} partitions, not {self._wanted + 1}")
        return self._wanted

    def _start_offset(self, consumer: Consumer, timeout_s: float) -> int:
        """The partition's end, or the first offset written at or after ``since_ms`` (the end
        when there is none)."""
        end = end_offset(consumer, self._topic, self.partition, timeout_s=timeout_s)
        if self._since_ms is None:
            return end
        ends = {self.partition: end}
        starts = offsets_since(consumer, self._topic, ends, self._since_ms, timeout_s=timeout_s)
        return starts[self.partition]

    def _read(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stopping.is_set():
                first = consumer.poll(_POLL_S)  # returns with the first outcome that arrives
                if first is not None:
                    # consume(n, t) waits for n records or t s: only what is already here
                    for message in [first, *consumer.consume(_DRAIN, timeout=0)]:
                        if message.error() is not None:
                            log.warning("reading %s: %s", self._topic, message.error())
                            continue
                        self._take(message.value() or b"")
                # after the outcomes: the delivery reports it serves (one callback per task
                # sent) must not stand between an outcome that arrived and its caller
                self._between()
        finally:
            self._stopping.set()
            consumer.close()
            self._fail_waiting()

    def _take(self, value: bytes) -> None:
        try:
            outcome = self._codec.decode(value, TaskOutcome)
        except TaskdError as error:  # undecodable, or a registry that cannot be reached
            log.warning("a record on %s was skipped: %s", self._topic, error)
            return
        with self._lock:
            if outcome.task_id in self._recent:
                return  # a repeat (a dispatcher wrote it again after a crash): the first counts
            self._recent.put(outcome.task_id, outcome)
            future = self._waiting.pop(outcome.task_id, None)
        if future is not None:
            future.set_result(outcome)

    def _fail_waiting(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(KafkaError("the task client's results reader has stopped"))


Decode = Callable[[bytes | None], T]


class TaskHandle(Generic[T]):
    """A task sent by a client that waits for results: its outcome once it ends.

    ``result(timeout)`` blocks until the task ends and returns its output (decoded by the
    client: bytes for :class:`~streams.client.TaskClient`, JSON for an app's tasks), or raises
    TaskFailedError (dead-lettered or cancelled) or ResultTimeoutError. ``await handle`` does
    the same in asyncio.
    """

    __slots__ = ("_decode", "task", "waits")

    def __init__(self, task: Task, waits: futures.Future[TaskOutcome], decode: Decode[T]) -> None:
        self.task = task
        self.waits = waits
        """The future of the task's outcome."""
        self._decode = decode

    @property
    def task_id(self) -> str:
        return self.task.task_id

    def done(self) -> bool:
        """Whether the task's outcome has arrived."""
        return self.waits.done()

    def outcome(self, timeout: float | None = None) -> TaskOutcome:
        """How the task ended, waiting up to ``timeout`` s (None: for ever); ResultTimeoutError."""
        try:
            return self.waits.result(timeout)
        except futures.TimeoutError:
            raise ResultTimeoutError(
                f"task {self.task_id} has not ended within {timeout:g} s", pending=1
            ) from None

    def result(self, timeout: float | None = None) -> T:
        """The task's output, waiting up to ``timeout`` s; TaskFailedError if it did not succeed."""
        return self._value(self.outcome(timeout))

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait_async().__await__()

    async def _wait_async(self) -> T:
        return self._value(await asyncio.wrap_future(self.waits))

    def _value(self, outcome: TaskOutcome) -> T:
        if not outcome.succeeded:
            raise TaskFailedError(outcome)
        return self._decode(outcome.output)

    def __repr__(self) -> str:
        if not self.done():
            state = "PENDING"
        elif self.waits.exception() is not None:
            state = "NO OUTCOME"
        else:
            state = self.waits.result().status.value
        return f"TaskHandle({self.task.type!r}, {self.task_id!r}, {state})"


def outcomes_as_completed(
    waits: Iterable[futures.Future[TaskOutcome]],
    timeout: float | None = None,
    *,
    no_outcome: list[BaseException] | None = None,
) -> Iterator[TaskOutcome]:
    """Each outcome as it arrives; ResultTimeoutError (with how many are still pending) once
    ``timeout`` s have passed. A task that will have no outcome (its record never reached the
    broker) raises its error, or, given ``no_outcome``, has it appended there and is skipped."""
    pending = list(waits)
    done = 0
    try:
        for future in futures.as_completed(pending, timeout=timeout):
            done += 1
            error = future.exception()
            if error is None:
                yield future.result()
            elif no_outcome is None:
                raise error
            else:
                no_outcome.append(error)
    except futures.TimeoutError:
        left = len(pending) - done
        raise ResultTimeoutError(
            f"{left} of {len(pending)} tasks have not ended within {timeout:g} s", pending=left
        ) from None
