"""Background writes: each record is written until the broker confirms it, then its
follow-up (a table update, an ack) runs on the event loop.

A failed delivery is tried again after a pause rather than given up: the records are safe to
repeat for their readers (agents skip repeated attempts, the loop drops repeated tasks), while
a dropped one would leave its input unacknowledged and its task stuck until a restart.

The lifecycle events (:class:`EventLog`) are the exception: audit, not state, so they are
written once and never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TypedDict, Unpack

from streams.adapters.dispatcher.outputs import Headers, Outputs
from streams.errors import DeliveryError, EncodeError
from streams.wire import Task, TaskEvent, TaskEventKind, TaskStatus
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)

RETRY_WRITE_S = 1.0
"""Pause before writing a record again after a failed delivery."""
Then = Callable[[], object]
"""A follow-up (what it returns is ignored)."""


class Pending:
    """A write under way (or a group of them): its follow-ups run once it is confirmed."""

    __slots__ = ("_followers", "done")

    def __init__(self) -> None:
        self.done = False
        self._followers: list[Then] = []

    def then(self, follow: Then) -> None:
        """``follow()`` once confirmed (at once if it is already)."""
        if self.done:
            follow()
        else:
            self._followers.append(follow)

    def finish(self) -> None:
        self.done = True
        followers, self._followers = self._followers, []
        for follow in followers:
            try:
                follow()
            except Exception:  # one follow-up's bug must not keep the others from running
                log.exception("a write's follow-up failed")


def all_of(pending: Iterable[Pending | None]) -> Pending:
    """A pending confirmed once every one of ``pending`` is (None: nothing to wait for; none
    left: confirmed at once)."""
    group = Pending()
    waiting = [write for write in pending if write is not None and not write.done]
    left = len(waiting)
    if not left:
        group.finish()
        return group

    def one_done() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            group.finish()

    for write in waiting:
        write.then(one_done)
    return group


class Writes:
    """The writes in progress; ``close`` abandons them (their inputs stay unacked).

    Callbacks, not a coroutine per record: each write is a produce call whose delivery report
    (batched by ``Outputs``) runs its follow-up on the event loop.
    """

    def __init__(self, outputs: Outputs, loop: asyncio.AbstractEventLoop) -> None:
        self._outputs = outputs
        self._loop = loop
        self._outstanding = 0
        self._retrying: set[asyncio.TimerHandle] = set()
        self._closed = False

    def write(
        self,
        topic: str,
        value: bytes,
        *,
        key: str,
        partition: int,
        then: Then | None = None,
        headers: Headers | None = None,
    ) -> Pending:
        """Write one record to ``topic``/``partition``; ``then()`` once it is confirmed."""
        pending = Pending()
        if then is not None:
            pending.then(then)
        self._outstanding += 1

        def send() -> None:
            self._outputs.send(
                topic, value, key=key, partition=partition, headers=headers, on_delivery=delivered
            )

        def delivered(error: DeliveryError | None) -> None:
            if self._closed:
                return
            if error is not None:
                log.warning("write to %s failed, trying again: %s", topic, error)
                self._later(send)
                return
            self._outstanding -= 1
            pending.finish()

        send()
        return pending

    def outstanding(self) -> int:
        """Writes not confirmed yet."""
        return self._outstanding

    def close(self) -> None:
        """Abandon the writes under way: no follow-up runs any more."""
        self._closed = True
        for handle in self._retrying:
            handle.cancel()
        self._retrying.clear()

    def _later(self, send: Then) -> None:
        def again() -> None:
            self._retrying.discard(handle)
            send()

        handle = self._loop.call_later(RETRY_WRITE_S, again)
        self._retrying.add(handle)


class EventDetails(TypedDict, total=False):
    """The optional fields of a :class:`TaskEvent`, for :meth:`EventLog.emit`."""

    agent_id: str | None
    status: TaskStatus | None
    reason: str | None
    error: str | None
    due_at: int | None


class EventLog:
    """The ``events`` topic: one :class:`TaskEvent` per step of a task, best effort.

    Each event is one produce call on the dispatcher's producer, never awaited nor retried, so
    events neither slow dispatch nor hold an acknowledgement back; a lost one is only counted
    (``Outputs.failed_unconfirmed``). An event goes to its task's shard (the partition of its
    input topic), keyed by the task id, written at the moment the dispatcher takes the step:
    the producer keeps them in that order within the partition.
    """

    def __init__(
        self, outputs: Outputs, codec: RecordCodec, topic: str, *, enabled: bool = True
    ) -> None:
        self._outputs = outputs
        self._codec = codec
        self._topic = topic
        self.enabled = enabled

    def emit(
        self,
        kind: TaskEventKind,
        task: Task,
        shard: int,
        *,
        at: int,
        attempt: int | None = None,
        **details: Unpack[EventDetails],
    ) -> None:
        """Write the ``kind`` event of ``task`` (about its attempt unless ``attempt`` is given)."""
        if not self.enabled:
            return
        event = TaskEvent(
            task_id=task.task_id,
            type=task.type,
            kind=kind,
            at=at,
            attempt=task.attempt if attempt is None else attempt,
            priority=task.priority,
            tenant=task.tenant,
            **details,
        )
        try:
            value = self._codec.encode(event)
        except EncodeError as error:  # e.g. an out-of-range time from an agent's clock
            log.warning("event %s of %s not written: %s", kind.value, task.task_id, error)
            return
        self._outputs.send_unconfirmed(self._topic, value, key=task.task_id, partition=shard)
