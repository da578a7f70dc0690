"""Carries out the core's actions on Kafka, in the order the durability rules ask for.

- Dispatch: ``inflight`` table, then the Assignment to the agent's partition with its
  registration epoch, then (both confirmed: the assignment and the table's changelog record)
  the input events are acked.
- Retry, DeadLetter: the record first; once confirmed, the ``inflight`` entry goes, ``ended``
  is written (dead letters), then (their changelog records confirmed) the events are acked.
- Completed: the table entries, then (confirmed) the ack. Requeued: the task stays backed by its
  ``inflight`` entry until it is dispatched again or ends.

Writes run in the background (``writes.py``) and are tried until the broker confirms them.
Each step is also counted in the metrics and written as a lifecycle event (``EventLog``,
best effort) when the executor takes it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streams.adapters.dispatcher.acks import OrderedAcks, Token
from streams.adapters.dispatcher.book import Book, Tracked
from streams.adapters.dispatcher.registrations import Registrations
from streams.adapters.dispatcher.tables import Tables
from streams.adapters.dispatcher.writes import EventLog, Pending, Writes, all_of
from streams.adapters.metrics import DispatcherMetrics
from streams.core import actions as act
from streams.core.distributor import Distributor
from streams.core.model import DeadLetterReason, Job, dedupe_key
from streams.wire import Assignment, DeadLetter, Task, TaskEventKind, TaskResult, TaskStatus
from streams.wire.codec import RecordCodec
from streams.wire.topics import TopicNames

log = logging.getLogger(__name__)

DUE_HEADER = "taskd-due-ms"
"""Record header of a retry record: when it is due, ms since the epoch (ASCII digits)."""


class Intake:
    """Pauses and resumes reading the task topics (back-pressure); set by the app."""

    def pause(self) -> None:
        """Stop reading the task topics."""

    def resume(self) -> None:
        """Read the task topics again."""


@dataclass(frozen=True, slots=True)
class Io:
    """What the executor writes to."""

    writes: Writes
    tables: Tables
    acks: OrderedAcks
    codec: RecordCodec
    topics: TopicNames
    intake: Intake
    events: EventLog
    metrics: DispatcherMetrics


class Executor:
    """Turns actions into writes; acks a cause (a result event) once its task is settled."""

    def __init__(
        self,
        core: Distributor,
        book: Book,
        regs: Registrations,
        io: Io,
        clock: Callable[[], int],
    ) -> None:
        self._core = core
        self._book = book
        self._regs = regs
        self._io = io
        self._clock = clock

    def run(
        self,
        actions: Iterable[act.Action],
        *,
        cause: Token | None = None,
        cause_task: str | None = None,
    ) -> None:
        """Carry out ``actions`` (and those they lead to); ack ``cause`` once the actions about
        ``cause_task`` are done."""
        queue: deque[act.Action] = deque(actions)
        settling: list[Pending] = []
        while queue:
            action = queue.popleft()
            pending = self._one(action, queue)
            job = getattr(action, "job", None)
            if pending is not None and job is not None and job.task_id == cause_task:
                settling.append(pending)
        if cause is not None:
            all_of(settling).then(lambda: self._io.acks.done(cause))

    def received(self, task: Task, job: Job, shard: int, *, fresh: bool) -> None:
        """A task taken in (not a duplicate); ``fresh``: from a task topic, not a retry tier."""
        self._io.metrics.on_received(job)
        if fresh:
            self._io.events.emit(TaskEventKind.RECEIVED, task, shard, at=self._clock())

    def result_taken(self, result: TaskResult, job: Job) -> None:
        """The core accepted ``result`` (the run of ``job``): metrics, STARTED (unless the
        agent refused the task), then COMPLETED or FAILED, before its actions are carried out."""
        status = act.ResultStatus(result.status.value)
        self._io.metrics.on_result(
            job, status, started_ms=result.started_at, finished_ms=result.finished_at
        )
        tracked = self._book.tasks.get(result.task_id)
        if tracked is None:
            return
        emit = functools.partial(
            self._io.events.emit,
            task=tracked.task,
            shard=tracked.shard,
            attempt=result.attempt,
            agent_id=result.agent_id,
            status=result.status,
        )
        if result.status is not TaskStatus.REJECTED:
            emit(TaskEventKind.STARTED, at=result.started_at)
        ended = result.status in (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED)
        kind = TaskEventKind.COMPLETED if ended else TaskEventKind.FAILED
        emit(kind, at=result.finished_at, error=result.error)

    def dead_letter_raw(self, raw: bytes, error: str, token: Token) -> None:
        """Bytes that are no task: a MALFORMED dead letter keeping them, then the ack (no
        event: there is no task id to key it by)."""
        self._io.metrics.on_dead_letter(DeadLetterReason.MALFORMED)
        record = DeadLetter(
            raw=raw,
            reason=DeadLetterReason.MALFORMED,
            error=error,
            attempts=0,
            source_topic=token.topic,
            source_partition=token.partition,
            source_offset=token.offset,
            dead_at=self._clock(),
        )
        self._io.writes.write(
            self._io.topics.dlq,
            self._io.codec.encode(record),
            key=f"{token.topic}:{token.partition}:{token.offset}",
            partition=token.partition,
            then=lambda: self._io.acks.done(token),
        )

    # --- one action each ----------------------------------------------------------------------

    def _one(self, action: act.Action, queue: deque[act.Action]) -> Pending | None:
        if isinstance(action, act.Dispatch):
            return self._dispatch(action, queue)
        if isinstance(action, act.Retry):
            return self._retry(action)
        if isinstance(action, act.DeadLetter):
            return self._dead_letter(action)
        if isinstance(action, act.Completed):
            return self._end(action.job.task_id, self._book.tasks.pop(action.job.task_id, None))
        if isinstance(action, act.Requeued):
            self._requeued(action)
        elif isinstance(action, act.PauseIntake):
            self._io.intake.pause()
        elif isinstance(action, act.ResumeIntake):
            self._io.intake.resume()
        return None

    def _dispatch(self, action: act.Dispatch, queue: deque[act.Action]) -> Pending | None:
        task_id = action.job.task_id
        tracked = self._book.tasks.get(task_id)
        registration = self._regs.active(action.agent_id)
        if tracked is None:
            log.error("dispatch of an untracked task %s: ignored", task_id)
            return None
        if registration is None:  # its claim ended after its last heartbeat: take it back
            queue.extend(self._core.agent_left(action.agent_id, self._clock()))
            return None
        tracked.task = dataclasses.replace(tracked.task, attempt=action.job.attempt)
        assignment = Assignment(
            task=tracked.task,
            agent_id=action.agent_id,
            epoch=registration.epoch,
            dispatched_at=action.dispatched_ms,
            lease_ms=action.lease_ms,
            dispatcher_shard=tracked.shard,
            reply_partition=tracked.shard,
        )
        value = self._io.codec.encode(assignment)
        in_table = self._io.tables.put_inflight(tracked.shard, task_id, value)
        self._book.in_table[task_id] = tracked.task.attempt
        tokens, tracked.tokens = tracked.tokens, []
        sent = self._io.writes.write(
            self._io.topics.dispatch, value, key=task_id, partition=registration.partition
        )
        pending = all_of([in_table, sent])
        pending.then(lambda: self._ack(tokens))
        self._io.metrics.on_dispatched(action.job, action.dispatched_ms)
        self._io.events.emit(
            TaskEventKind.DISPATCHED,
            tracked.task,
            tracked.shard,
            at=action.dispatched_ms,
            agent_id=action.agent_id,
        )
        return pending

    def _retry(self, action: act.Retry) -> Pending | None:
        task_id = action.job.task_id
        tracked = self._book.tasks.pop(task_id, None)
        if tracked is None:
            log.error("retry of an untracked task %s: ignored", task_id)
            return None
        task = dataclasses.replace(tracked.task, attempt=action.job.attempt)
        table_attempt = self._book.in_table.get(task_id)

        def settle() -> None:
            dropped = self._drop_inflight(task_id, tracked.shard, table_attempt)
            all_of([dropped]).then(ack)

        def ack() -> None:
            self._ack(tracked.tokens)

        pending = self._io.writes.write(
            self._io.topics.retry(action.tier),
            self._io.codec.encode(task),
            key=task_id,
            partition=tracked.shard,
            headers=[(DUE_HEADER, str(action.due_ms).encode())],
            then=settle,
        )
        self._io.metrics.on_retry(action.tier)
        self._io.events.emit(
            TaskEventKind.RETRIED,
            task,
            tracked.shard,
            at=self._clock(),
            error=action.error,
            due_at=action.due_ms,
        )
        return pending

    def _dead_letter(self, action: act.DeadLetter) -> Pending | None:
        task_id = action.job.task_id
        tracked = self._book.tasks.pop(task_id, None)
        if tracked is None:
            log.error("dead letter of an untracked task %s: ignored", task_id)
            return None
        source = tracked.source
        record = DeadLetter(
            task=dataclasses.replace(tracked.task, attempt=action.job.attempt),
            reason=action.reason,
            error=action.error,
            attempts=action.attempts,
            source_topic=None if source is None else source.topic,
            source_partition=None if source is None else source.partition,
            source_offset=None if source is None else source.offset,
            dead_at=self._clock(),
        )
        table_attempt = self._book.in_table.get(task_id)
        pending = self._io.writes.write(
            self._io.topics.dlq,
            self._io.codec.encode(record),
            key=task_id,
            partition=tracked.shard,
            then=lambda: self._end(task_id, tracked, table_attempt),
        )
        self._io.metrics.on_dead_letter(action.reason)
        self._dead_letter_events(action, record, tracked.shard)
        return pending

    def _dead_letter_events(self, action: act.DeadLetter, record: DeadLetter, shard: int) -> None:
        """EXPIRED first when it expired, then DEAD_LETTERED with the reason and the error."""
        assert record.task is not None  # a task's dead letter (not raw bytes)
        emit = functools.partial(
            self._io.events.emit, task=record.task, shard=shard, at=record.dead_at
        )
        if action.reason is DeadLetterReason.EXPIRED:
            emit(TaskEventKind.EXPIRED, error=action.error)
        emit(TaskEventKind.DEAD_LETTERED, reason=action.reason.value, error=action.error)

    def _requeued(self, action: act.Requeued) -> None:
        """The task stays tracked, backed by its inflight entry until dispatched again."""
        tracked = self._book.tasks.get(action.job.task_id)
        if tracked is not None:
            self._io.events.emit(
                TaskEventKind.REQUEUED,
                tracked.task,
                tracked.shard,
                at=self._clock(),
                attempt=action.job.attempt,
                agent_id=action.agent_id,
                reason=action.cause,
            )

    # --- settling -----------------------------------------------------------------------------

    def _end(
        self, task_id: str, tracked: Tracked | None, table_attempt: int | None = None
    ) -> Pending | None:
        """The task ended: its inflight entry goes, ``ended`` remembers it, and its events are
        acked once both changelog records are confirmed."""
        if tracked is None:
            return None
        if table_attempt is None:
            table_attempt = self._book.in_table.get(task_id)
        key = dedupe_key(task_id, tracked.task.headers)
        self._book.ended.add(key, tracked.shard)
        dropped = self._drop_inflight(task_id, tracked.shard, table_attempt)
        ended = self._io.tables.put_ended(tracked.shard, key, self._clock())
        settled = all_of([dropped, ended])
        tokens = tracked.tokens
        settled.then(lambda: self._ack(tokens))
        return settled

    def _drop_inflight(self, task_id: str, shard: int, attempt: int | None) -> Pending | None:
        """Delete the entry, unless a later dispatch of the task has replaced it since; the
        deletion's changelog record (None if nothing was deleted)."""
        if attempt is None or self._book.in_table.get(task_id) != attempt:
            return None
        del self._book.in_table[task_id]
        return self._io.tables.drop_inflight(shard, task_id)

    def _ack(self, tokens: list[Token]) -> None:
        for token in tokens:
            self._io.acks.done(token)
