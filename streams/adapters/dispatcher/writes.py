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
from collections.abc import Callable, Coroutine
from typing import Any, TypedDict, Unpack

from streams.adapters.dispatcher.outputs import Headers, Outputs
from streams.errors import DeliveryError, EncodeError
from streams.wire import Task, TaskEvent, TaskEventKind, TaskStatus
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)

RETRY_WRITE_S = 1.0
"""Pause before writing a record again after a failed delivery."""
Then = Callable[[], None]


class Writes:
    """The writes in progress; ``close`` cancels them (their inputs stay unacked)."""

    def __init__(self, outputs: Outputs) -> None:
        self._outputs = outputs
        self._running: set[asyncio.Task[None]] = set()

    def write(
        self,
        topic: str,
        value: bytes,
        *,
        key: str,
        partition: int,
        then: Then,
        headers: Headers | None = None,
    ) -> asyncio.Task[None]:
        """Write one record to ``topic``/``partition``; ``then()`` once it is confirmed."""
        return self._spawn(self._write(topic, value, key, partition, headers, then))

    def after(self, pending: list[asyncio.Task[None]], then: Then) -> asyncio.Task[None]:
        """``then()`` once every write of ``pending`` is confirmed (at once if none)."""
        return self._spawn(self._after(pending, then))

    def outstanding(self) -> int:
        """Writes (and follow-ups) not finished yet."""
        return len(self._running)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _write(
        self,
        topic: str,
        value: bytes,
        key: str,
        partition: int,
        headers: Headers | None,
        then: Then,
    ) -> None:
        while True:
            try:
                await self._outputs.send(
                    topic, value, key=key, partition=partition, headers=headers
                )
                break
            except DeliveryError as error:
                log.warning("write to %s failed, trying again: %s", topic, error)
                await asyncio.sleep(RETRY_WRITE_S)
        then()

    async def _after(self, pending: list[asyncio.Task[None]], then: Then) -> None:
        if pending:
            await asyncio.gather(*pending)
        then()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatcher write failed", exc_info=task.exception())


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
