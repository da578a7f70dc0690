"""Carries out the core's actions: the records to write and the state changes to note.

- Dispatch: the assignment joins its agent's batch (one record per agent per pass, written to
  the agent's partition with its claim's epoch); the task's state is noted open (the
  checkpoint writes it, and finishes its input record, if it is still open a checkpoint later).
  Every assignment of an agent names one reply partition, a shard this instance owns chosen by
  the agent's id, so the agent's results of one turn go out as one record; each result names
  its task's own shard, and an instance that reads a result of a shard it does not own hands it
  on to that shard (``forward_results``).
- Retry: the task, its attempt counted, to its retry tier with the due time in a header.
- DeadLetter: the dead letter; Completed: nothing to write. Both end the task: its state is
  noted closed and its dedupe key ended.
- Requeued: the task's state is noted open again, waiting for a slot.
- PauseIntake, ResumeIntake: nothing; the intake keeps the held tasks within ``max_held`` by
  itself (``intake.py``, exactly, where the core learns it one batch late).

Every record goes through :class:`Outputs`; the checkpoint waits for them before it writes the
state and commits. Metrics are counted here, as the actions are carried out.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence

from streams.adapters.dispatcher.origin import Origin
from streams.adapters.dispatcher.outputs import Outputs
from streams.adapters.dispatcher.registrations import Registrations
from streams.adapters.dispatcher.state import ShardState
from streams.adapters.logs import RateLimitedLog, log_dead_letter
from streams.adapters.metrics import DispatcherMetrics
from streams.core import actions as act
from streams.core.events import AgentLeft, Event
from streams.core.model import DeadLetterReason, Job
from streams.errors import EncodeError
from streams.wire import (
    GROUPED_HEADER,
    SOURCE_KEY_HEADER,
    STOP_HEADER,
    STOP_PREEMPT,
    Assignment,
    AssignmentBatch,
    DeadLetter,
    OutcomeStatus,
    ResultBatch,
    TaskEvent,
    TaskEventKind,
    TaskOutcome,
    TaskResult,
    TaskStatus,
    header,
    outcome_partition,
)
from streams.wire.codec import RecordCodec
from streams.wire.limits import assignment_bytes, by_size, excerpt, shorten
from streams.wire.topics import TopicNames

log = logging.getLogger(__name__)

DUE_HEADER = "taskd-due-ms"
"""Record header of a retry record: when it is due, ms since the epoch (ASCII digits)."""
PREEMPTED_HEADER = "taskd-preempted"
"""Record header of a retry record whose task was preempted: how many times (ASCII digits).
The wire task does not hold the count; this keeps ``preempt_max_per_task`` through the tier."""

ResultsByRun = Mapping[tuple[str, int], TaskResult]
"""The results of one batch by (task id, attempt), for the figures of the ones taken."""


class Effects:
    """Turns actions into records and state changes (see the module docstring)."""

    def __init__(
        self,
        *,
        outputs: Outputs,
        codec: RecordCodec,
        topics: TopicNames,
        regs: Registrations,
        states: dict[int, ShardState],
        metrics: DispatcherMetrics,
        clock: Callable[[], int],
        events_enabled: bool = False,
        replies_partitions: int = 0,
        record_bytes: int = 1_000_000,
    ) -> None:
        self._outputs = outputs
        self._codec = codec
        self._topics = topics
        self._regs = regs
        self._states = states
        self._metrics = metrics
        self._clock = clock
        self.events_enabled = events_enabled
        self._replies_partitions = replies_partitions
        self._record_bytes = record_bytes
        """The largest record to write: an agent's assignments of one pass are cut to fit."""
        self._unanswerable = RateLimitedLog(log, "outcomes asked on missing partitions", burst=1)
        """Warns of tasks asking for a reply partition the topic lacks (bounded in keys)."""
        self._results: ResultsByRun = {}
        self._owned: list[int] = []

    def carry_out(self, actions: Sequence[act.Action], results: ResultsByRun) -> list[Event]:
        """Carry out ``actions`` in order; the events the core must be told next (an agent
        whose claim ended before its batch could be written)."""
        batches: dict[str, _AgentBatch] = {}
        self._results = results
        self._owned = sorted(self._states)
        for action in actions:
            if isinstance(action, act.Dispatch):
                self._dispatch(action, batches)
            elif isinstance(action, act.Dropped):
                self._drop(action.job)
            elif isinstance(action, act.Finished):
                self._finished(action, results)
            elif isinstance(action, act.StopRun):
                self._stop(action)
            else:
                self._settle(action)
        return self._write_batches(batches)

    def forward_results(self, shard: int, results: list[TaskResult]) -> None:
        """Results read here of a shard another instance owns: to that shard's partition."""
        value = self._codec.encode(ResultBatch(results=tuple(results)))
        self._outputs.send(self._topics.results, value, key=b"forwarded", partition=shard)

    def dead_letter_raw(
        self,
        raw: bytes,
        error: str,
        topic: str,
        partition: int,
        offset: int,
        reason: DeadLetterReason = DeadLetterReason.MALFORMED,
    ) -> None:
        """A record refused at the intake (no valid task or result: MALFORMED; a task over a
        size limit: TOO_LARGE): a dead letter keeping an excerpt of its bytes."""
        self._metrics.on_dead_letter(reason)
        where = f"{topic}:{partition}:{offset}"
        log_dead_letter(log, where, reason, error, attempts=0)
        record = DeadLetter(
            raw=excerpt(raw),
            reason=reason,
            error=shorten(error),
            attempts=0,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            dead_at=self._clock(),
        )
        key = where.encode()
        self._outputs.send(
            self._topics.dlq, self._codec.encode(record), key=key, partition=partition
        )

    # --- one action each -----------------------------------------------------------------------

    def _dispatch(self, action: act.Dispatch, batches: dict[str, _AgentBatch]) -> None:
        job = action.job
        origin = _origin(job)
        assignment = self._assignment(
            job, action.agent_id, action.epoch, action.dispatched_ms, action.lease_ms
        )
        batch = batches.get(action.agent_id)
        if batch is None:
            batch = batches[action.agent_id] = _AgentBatch()
        batch.assignments.append(assignment)
        if action.grouped:
            batch.grouped_types.add(job.task_type)
        self._note(origin, job.task_id, action)
        self._metrics.on_dispatched(job, action.dispatched_ms)

    def _stop(self, action: act.StopRun) -> None:
        """Tell the agent to stop a run: its assignment again, on its partition, under the
        stop header (an agent that does not know the header skips it as an attempt seen);
        its value says whether the run is cancelled or preempted (it will run again)."""
        claim = self._regs.active(action.agent_id)
        if claim is None or claim.epoch != action.epoch:
            return  # the agent is gone: its run's loss ends the task (the core knows)
        if action.preempted:  # counted as told, not as decided: a gone agent is told nothing
            self._metrics.on_preempted(action.job)
        job = action.job
        stop = self._assignment(job, action.agent_id, action.epoch, self._clock(), 0)
        why = "preempted" if action.preempted else "cancelled"
        log.info("task %s %s: agent %s told to stop it", job.task_id, why, action.agent_id)
        value = STOP_PREEMPT.encode() if action.preempted else b"1"
        self._outputs.send(
            self._topics.dispatch,
            self._codec.encode(AssignmentBatch(assignments=(stop,))),
            key=action.agent_id.encode(),
            partition=claim.partition,
            headers=[(STOP_HEADER, value)],
        )

    def _assignment(
        self, job: Job, agent_id: str, epoch: int, dispatched_ms: int, lease_ms: int
    ) -> Assignment:
        """``job``'s attempt as ``agent_id`` reads it on its partition."""
        origin = _origin(job)
        return Assignment(
            task=origin.task_at(job.attempt),
            agent_id=agent_id,
            epoch=epoch,
            dispatched_at=dispatched_ms,
            lease_ms=lease_ms,
            dispatcher_shard=origin.shard,
            reply_partition=self._reply_partition(agent_id, origin.shard),
        )

    def _reply_partition(self, agent_id: str, shard: int) -> int:
        """One shard this instance owns per agent (by a stable hash of its id): all its
        results of a turn go out in one record."""
        owned = self._owned
        if not owned:
            return shard
        return owned[zlib.crc32(agent_id.encode()) % len(owned)]

    def _finished(self, action: act.Finished, results: ResultsByRun) -> None:
        result = results.get((action.job.task_id, action.job.attempt))
        if result is not None:
            self._metrics.on_result(
                action.job,
                action.status,
                started_ms=result.started_at,
                finished_ms=result.finished_at,
            )

    def _settle(self, action: act.Action) -> None:
        if isinstance(action, act.Completed):
            self._end(action.job, Ending(agent_id=action.agent_id, status=action.status))
        elif isinstance(action, act.DeadLetter):
            self._dead_letter(action)
        elif isinstance(action, act.Retry):
            self._retry(action)
        elif isinstance(action, act.Requeued):
            self._note(_origin(action.job), action.job.task_id, action)
        elif isinstance(action, act.Cancelled):
            log.info("task %s cancelled before it ran", action.job.task_id)
            self._end(action.job, Ending(status=act.ResultStatus.CANCELLED))

    def _retry(self, action: act.Retry) -> None:
        job = action.job
        origin = _origin(job)
        self._outputs.send(
            self._topics.retry(action.tier),
            self._codec.encode(origin.task_at(job.attempt)),
            key=job.task_id.encode(),
            partition=origin.shard,
            headers=_retry_headers(action.due_ms, job.preempted),
        )
        origin.finish_input()
        # The head of an ordering key keeps its key through the backoff, across a restart too:
        # its state record brings it back before the inputs behind it are read (the retry
        # record alone comes later, and is then a duplicate).
        kept = act.Requeued(job, "", "retry") if job.ordering_key is not None else None
        self._note(origin, job.task_id, kept)
        self._metrics.on_retry(action.tier)

    def _dead_letter(self, action: act.DeadLetter) -> None:
        job = action.job
        origin = _origin(job)
        record = DeadLetter(
            task=origin.task_at(job.attempt),
            reason=action.reason,
            error=shorten(action.error),
            attempts=action.attempts,
            source_topic=origin.topic,
            source_partition=None if origin.topic is None else origin.shard,
            source_offset=None if origin.topic is None else origin.offset,
            dead_at=self._clock(),
        )
        self._outputs.send(
            self._topics.dlq,
            self._codec.encode(record),
            key=job.task_id.encode(),
            partition=origin.shard,
        )
        self._metrics.on_dead_letter(action.reason)
        log_dead_letter(log, job.task_id, action.reason, action.error, task_type=job.task_type,
                        attempts=action.attempts)  # fmt: skip
        self._end(job, Ending(reason=action.reason, error=action.error, attempts=action.attempts))

    def _drop(self, job: Job) -> None:
        """A duplicate: its input is done with; a state record it was recovered from (no input
        behind it) is deleted at the next checkpoint, so that it does not outlive the window
        of ended tasks that made it a duplicate."""
        origin = _origin(job)
        if origin.topic is None:
            self._note(origin, job.task_id, None)
        origin.finish_input()

    def _end(self, job: Job, ending: Ending) -> None:
        """The task ended: its state closed, its dedupe key ended, its input finished, its
        outcome written if it asked for one, and (if enabled) its one lifecycle event."""
        origin = _origin(job)
        self._note(origin, job.task_id, None)
        state = self._states.get(origin.shard)
        if state is not None:
            state.ended.append(job.dedupe_key)
        origin.finish_input()
        partition = outcome_partition(origin.task.headers)
        if partition is None and not self.events_enabled:
            return
        ran = self._ran(job)
        if partition is not None:
            self._reply(job, origin, partition, ending, ran)
        if self.events_enabled:
            self._event(job, origin, ending, ran)

    def _note(
        self, origin: Origin, task_id: str, change: act.Dispatch | act.Requeued | None
    ) -> None:
        state = self._states.get(origin.shard)
        if state is not None:  # None: the shard moved to another instance meanwhile
            state.note(task_id, change)

    def _reply(
        self, job: Job, origin: Origin, partition: int, ending: Ending, ran: TaskResult | None
    ) -> None:
        """The task's outcome to the replies partition it asked for (confirmed before the
        checkpoint commits its end, so a waiting client is never left without it)."""
        if partition >= self._replies_partitions:
            self._unanswerable.log(
                logging.WARNING,
                str(partition),
                "tasks ask for outcomes on partition %d of %s, which has %d: none written",
                partition,
                self._topics.replies,
                self._replies_partitions,
            )
            return
        failed = ending.reason is not None
        outcome = TaskOutcome(
            task_id=job.task_id,
            type=job.task_type,
            status=ending.outcome_status(),
            output=None if ran is None or failed else ran.output,
            error=ending.error if ran is None or failed else ran.error,
            dead_letter_reason=ending.reason,
            attempts=job.attempt + 1 if ending.attempts is None else ending.attempts,
            agent_id=ending.agent_id or (None if ran is None else ran.agent_id),
            submitted_at=job.submitted_ms,
            started_at=None if ran is None else ran.started_at,
            finished_at=None if ran is None else ran.finished_at,
            ended_at=self._clock(),
            source_key=header(origin.task.headers, SOURCE_KEY_HEADER),
        )
        self._outputs.send(
            self._topics.replies,
            self._codec.encode(outcome),
            key=job.task_id.encode(),
            partition=partition,
        )

    def _ran(self, job: Job) -> TaskResult | None:
        """The result of the task's last attempt, if an agent ran it (not merely refused it)."""
        result = self._results.get((job.task_id, job.attempt))
        return None if result is None or _never_ran(result) else result

    def _event(self, job: Job, origin: Origin, ending: Ending, ran: TaskResult | None) -> None:
        failed = ending.reason is not None
        status = ending.status
        event = TaskEvent(
            task_id=job.task_id,
            type=job.task_type,
            kind=TaskEventKind.DEAD_LETTERED if failed else TaskEventKind.COMPLETED,
            at=self._clock(),
            attempt=job.attempt,
            priority=job.priority,
            tenant=job.tenant,
            agent_id=ending.agent_id,
            status=None if status is None else TaskStatus(status.value),
            reason=None if ending.reason is None else ending.reason.value,
            error=ending.error,
            submitted_at=job.submitted_ms,
            started_at=None if ran is None else ran.started_at,
        )
        try:
            value = self._codec.encode(event)
        except EncodeError as problem:
            log.warning("event of %s not written: %s", job.task_id, problem)
            return
        self._outputs.send_unconfirmed(
            self._topics.events, value, key=job.task_id.encode(), partition=origin.shard
        )

    # --- the assignment batches ----------------------------------------------------------------

    def _write_batches(self, batches: dict[str, _AgentBatch]) -> list[Event]:
        follow_ups: list[Event] = []
        for agent_id, batch in batches.items():
            assignments = batch.assignments
            claim = self._regs.active(agent_id)
            epoch = assignments[0].epoch
            if claim is None or claim.epoch != epoch:
                # its claim changed after its last heartbeat: the core takes the tasks back
                log.warning("agent %s lost its claim before its assignments were written", agent_id)
                follow_ups.append(AgentLeft(agent_id))
                continue
            runs = list(by_size(assignments, assignment_bytes, self._record_bytes))
            for index, run in enumerate(runs):
                value = self._codec.encode(AssignmentBatch(assignments=tuple(run)))
                last = index == len(runs) - 1  # a group split by size is handed over whole
                self._outputs.send(
                    self._topics.dispatch,
                    value,
                    key=agent_id.encode(),
                    partition=claim.partition,
                    headers=batch.headers() if last else None,
                )
        return follow_ups


@dataclasses.dataclass(slots=True)
class _AgentBatch:
    """What one pass sends an agent: its assignments, and the task types of those that are a
    group for its batch handler."""

    assignments: list[Assignment] = dataclasses.field(default_factory=list)
    grouped_types: set[str] = dataclasses.field(default_factory=set)

    def headers(self) -> list[tuple[str, bytes]] | None:
        if not self.grouped_types:
            return None
        return [(GROUPED_HEADER, ",".join(sorted(self.grouped_types)).encode())]


@dataclasses.dataclass(frozen=True, slots=True)
class Ending:
    """How a task ended: completed by an agent (its id and status) or dead-lettered (the
    reason, the error and the attempts counted)."""

    agent_id: str | None = None
    status: act.ResultStatus | None = None
    reason: DeadLetterReason | None = None
    error: str | None = None
    attempts: int | None = None

    def outcome_status(self) -> OutcomeStatus:
        if self.reason is not None:
            return OutcomeStatus.FAILED
        if self.status is act.ResultStatus.CANCELLED:
            return OutcomeStatus.CANCELLED
        return OutcomeStatus.SUCCEEDED


def _origin(job: Job) -> Origin:
    origin = job.ref
    assert isinstance(origin, Origin), f"task {job.task_id} has no origin"
    return origin


def _never_ran(result: TaskResult) -> bool:
    return result.status is TaskStatus.REJECTED


def _retry_headers(due_ms: int, preempted: int) -> list[tuple[str, bytes]]:
    headers = [(DUE_HEADER, str(due_ms).encode())]
    if preempted:
        headers.append((PREEMPTED_HEADER, str(preempted).encode()))
    return headers
