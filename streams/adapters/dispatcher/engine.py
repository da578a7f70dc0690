"""The dispatcher's hot path: batches of input records in, the core once per batch, records out.

Everything here runs on the event loop, so the core is never entered twice. For each batch the
intake hands over (``intake.py``):

1. every record is decoded into core events: a task (MALFORMED dead letter if it is none), a
   retry with its due time, a batch of results;
2. the core handles them all at once (one release pass for the whole batch);
3. the actions are carried out (``effects.py``): one assignment record per agent, the retries
   and dead letters, the state changes noted for the next checkpoint.

Heartbeats and registrations (``agents_view.py``) are handled the same way. The core is ticked at
its next wake-up, and a checkpoint (``checkpoint.py``) is taken every ``commit_interval_ms``.
A shard assigned to this instance is recovered from the state changelog before its first record
is read; a shard revoked is checkpointed, then its tasks are withdrawn from the core.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import Message, TopicPartition

from streams.adapters.dispatcher.agents_view import AgentRecord
from streams.adapters.dispatcher.checkpoint import Checkpointer
from streams.adapters.dispatcher.effects import DUE_HEADER, PREEMPTED_HEADER, Effects
from streams.adapters.dispatcher.intake import TaskBudget
from streams.adapters.dispatcher.origin import Origin
from streams.adapters.dispatcher.registrations import Registrations
from streams.adapters.dispatcher.slots import AgentSlots
from streams.adapters.dispatcher.state import Recovered, ShardState
from streams.adapters.kafka import record_header
from streams.adapters.metrics import DispatcherMetrics
from streams.adapters.offsets import OffsetTracker
from streams.core.actions import Dropped, ResultStatus
from streams.core.agents import Heartbeat
from streams.core.distributor import Distributor
from streams.core.events import (
    AgentLeft,
    CancelRequested,
    EndedRecovered,
    Event,
    HeartbeatReceived,
    InFlightRecovered,
    ResultReported,
    TaskArrived,
    TaskStarted,
    Withdrawn,
)
from streams.core.grouping import BatchHandler
from streams.core.model import DeadLetterReason
from streams.core.window import LruMap
from streams.dispatcher_config import DispatcherConfig
from streams.errors import TooLargeError, WireError
from streams.settings import Settings
from streams.wire import (
    NO_HANDLER,
    PREEMPTED,
    AgentHeartbeat,
    AgentRegistration,
    CancelRequest,
    ResultBatch,
    Task,
    TaskResult,
    TaskStatus,
    decode_task,
    task_to_job,
    validate_task,
)
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)

_TASK, _RETRY, _RESULT, _CANCEL = range(4)
_RESULT_STATUS = {status: ResultStatus[status.name] for status in TaskStatus}
"""The core's result status of each wire status (the same names)."""
_MIN_SLEEP_S = 0.001
RAN_BEFORE_WINDOW = 4_096
RAN_BEFORE_OUTPUT_BYTES = 8_192
RAN_BEFORE_MAX_AGE_MS = 600_000
"""The successes of unknown tasks kept, the largest output kept (at most 32 MiB in all) and for
how long one counts: what a restart can have read before their tasks, dispatched in the
at-least-once window, are read again."""


class Engine:
    """Feeds the core and carries out its answers; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        config: DispatcherConfig,
        core: Distributor,
        codec: RecordCodec,
        effects: Effects,
        checkpointer: Checkpointer,
        regs: Registrations,
        slots: AgentSlots,
        states: dict[int, ShardState],
        budget: TaskBudget,
        metrics: DispatcherMetrics,
        clock: Callable[[], int],
    ) -> None:
        self._settings = settings
        self._config = config
        self._core = core
        self._codec = codec
        self._effects = effects
        self._checkpointer = checkpointer
        self._regs = regs
        self._states = states
        self._budget = budget
        self._metrics = metrics
        self._clock = clock
        self._levels = settings.priority_levels
        self._limits = settings.task_limits()
        topics = settings.topics
        self._kinds: dict[str, tuple[int, int | None]] = {
            topics.tasks(level): (_TASK, level) for level in range(self._levels)
        }
        self._kinds.update({name: (_RETRY, None) for name in topics.all_retries()})
        self._kinds[topics.results] = (_RESULT, None)
        self._kinds[topics.cancels] = (_CANCEL, None)
        self._trackers: dict[tuple[str, int], OffsetTracker] = {}
        self._slots = slots
        self._follow_ups: list[Event] = []
        self._tick: asyncio.TimerHandle | None = None
        self._tick_at = 0.0
        self._lost_writes: list[asyncio.Future[list[TopicPartition]]] = []
        self._ran_before: LruMap[tuple[str, int], tuple[TaskResult, int]] = LruMap(
            RAN_BEFORE_WINDOW
        )
        """Successes read for tasks the core did not know, by (task id, attempt), with when."""
        self.batches = 0
        """Input batches handled (a progress figure)."""

    # --- inputs ----------------------------------------------------------------------------------

    def on_batch(self, messages: list[Message]) -> None:
        """One batch of input records (any mix of topics and shards)."""
        now_ms = self._clock()
        events: list[Event] = self._take_follow_ups()
        results: dict[tuple[str, int], TaskResult] = {}
        fresh = 0
        fresh_records = 0
        for message in messages:
            fresh += self._decode(message, now_ms, events, results)
            fresh_records += self._kinds[message.topic() or ""][0] == _TASK
        actions = self._core.handle(events, now_ms)
        self._remember_unmatched(results.values(), now_ms)
        self._budget.handled(fresh_records, self._core.held)
        dropped = sum(1 for a in actions if isinstance(a, Dropped) and a.job.attempt == 0)
        self._metrics.received.inc(fresh - dropped)
        self._follow_ups += self._effects.carry_out(actions, results)
        self.batches += 1
        self._plan_tick(now_ms)

    def on_view(self, records: list[AgentRecord]) -> None:
        """Registrations and heartbeats, in the order the view read them."""
        events: list[Event] = self._take_follow_ups()
        for record in records:
            if isinstance(record, AgentRegistration):
                for agent_id in self._regs.apply(record):
                    self._slots.forget(agent_id)
                    events.append(AgentLeft(agent_id))
                continue
            claim = self._regs.active(record.agent_id)
            if claim is None:  # an agent without a partition can be sent nothing
                self._slots.forget(record.agent_id)
            else:
                offered = self._config.slots(record.capacity, record.prefetch)
                slots = self._slots.announced(
                    record.agent_id, claim.partition, record.capacity, offered
                )
                beat = heartbeat_of(record, slots=slots, incarnation=claim.epoch)
                events.append(HeartbeatReceived(beat))
        self._handle(events)

    # --- shards ----------------------------------------------------------------------------------

    @property
    def owned_shards(self) -> list[int]:
        """The shards this instance owns now."""
        return sorted(self._states)

    def adopt(
        self, recovered: Iterable[Recovered], written: Iterable[tuple[int, bytes]] = ()
    ) -> int:
        """Take over shards read back from the changelog, with the results ``written`` for them
        since the last commit ((partition, value), ``results_since_commit``); how many open
        tasks they had."""
        recovered = list(recovered)
        for shard in recovered:
            assert shard.state is not None
            self._states[shard.shard] = shard.state
        events: list[Event] = list(self._slots.own(self._states))
        count = 0
        for shard in recovered:
            events += [EndedRecovered(key) for key in shard.ended]
            for entry in shard.open:
                origin = Origin(entry.task, shard.shard)
                job = task_to_job(entry.task, origin, preempted=entry.preempted)
                if entry.agent_id is None:
                    events.append(TaskArrived(job))
                else:
                    events.append(
                        InFlightRecovered(
                            job, entry.agent_id, entry.epoch, entry.dispatched_at, entry.lease_ms
                        )
                    )
                count += 1
        results = self._written_results(written, {shard.shard for shard in recovered}, events)
        self._handle(events, results)
        return count

    def _written_results(
        self, written: Iterable[tuple[int, bytes]], shards: set[int], events: list[Event]
    ) -> dict[tuple[str, int], TaskResult]:
        """The events of the results of ``shards`` among ``written`` (the intake reads them
        again later: the core ignores a result of a task that ended). One that cannot be read
        is left to the intake, which dead-letters it."""
        results: dict[tuple[str, int], TaskResult] = {}
        for partition, raw in written:
            try:
                batch = self._codec.decode(raw, ResultBatch)
            except WireError:
                continue
            for result in batch.results:
                if (partition if result.shard is None else result.shard) in shards:
                    self._result_events(result, events, results)
        return results

    def _remember_unmatched(self, results: Iterable[TaskResult], now_ms: int) -> None:
        """Once the core has handled ``results``: the successes of tasks it neither knows nor
        has seen end. After a restart such a task may be read again from its input, and then
        ends with its success instead of running twice (:meth:`_ran_before_of`)."""
        core = self._core
        for result in results:
            if (
                result.status is TaskStatus.SUCCEEDED
                and (result.output is None or len(result.output) <= RAN_BEFORE_OUTPUT_BYTES)
                and core.phase_of(result.task_id) is None
                and not core.ended_recently(result.task_id)
            ):
                self._ran_before.put((result.task_id, result.attempt), (result, now_ms))

    def _ran_before_of(self, task: Task, now_ms: int) -> TaskResult | None:
        """The success remembered for ``task``'s attempt, if recent enough to be its run before
        a restart (not a reuse of its id long after)."""
        key = (task.task_id, task.attempt)
        found = self._ran_before.get(key)
        if found is None:
            return None
        self._ran_before.discard(key)
        result, at_ms = found
        return result if now_ms - at_ms <= RAN_BEFORE_MAX_AGE_MS else None

    async def hand_over(self, shards: Iterable[int], *, lost: bool) -> list[TopicPartition]:
        """Shards go to another instance: checkpoint them, then forget them; the offsets to
        commit before they go (none when ``lost``: see :meth:`_keep_lost`)."""
        gone = sorted(set(shards))
        offsets: list[TopicPartition] = []
        if lost:
            self._keep_lost(gone)
        else:  # every owned shard: a shard's results may sit in another's partition
            owned = list(self._states)
            offsets = await self._checkpointer.complete(
                dict(self._states), lambda: self.committable(owned)
            )
        self.release(gone)
        return offsets

    def _keep_lost(self, shards: list[int]) -> None:
        """The group session ran out, mostly because the broker could not be reached: the
        shards' open tasks are written for whoever owns them next (this instance, most often,
        once the broker is back), and nothing is committed. Without this, a task dispatched
        in the last checkpoint interval would be read again from its input and run twice.
        Should another instance have taken the shards meanwhile, a late record can only name
        a task it ended (dropped on recovery, as ended, and then deleted) or hands to another
        agent (its lease runs out): a task may wait longer, none is lost. The ended keys are
        not written: their record's key may be the other instance's next one too."""
        lost = {shard: self._states[shard] for shard in shards if shard in self._states}
        if lost:
            write = self._checkpointer.complete(lost, list, ended=False)
            self._lost_writes.append(asyncio.ensure_future(write))

    async def lost_written(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) until what lost shards held is written, so that their
        recovery reads it."""
        pending, self._lost_writes = self._lost_writes, []
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        if late:
            log.warning(
                "the open tasks of lost shards were not written within %.0f s: tasks "
                "dispatched just before may run twice",
                timeout_s,
            )

    def release(self, shards: Iterable[int]) -> None:
        """Forget shards now owned by another instance: their tasks, state and offsets."""
        gone = set(shards)
        owned = [
            job.task_id
            for job in self._core.jobs()
            if isinstance(job.ref, Origin) and job.ref.shard in gone
        ]
        for shard in gone:
            self._states.pop(shard, None)
        self._handle([Withdrawn(tuple(owned)), *self._slots.own(self._states)])
        for key in [key for key in self._trackers if key[1] in gone]:
            del self._trackers[key]

    def committable(self, shards: Iterable[int]) -> list[TopicPartition]:
        """The input offsets of ``shards`` that moved since they were last committed."""
        wanted = set(shards)
        offsets = []
        for (topic, partition), tracker in self._trackers.items():
            if partition in wanted:
                offset = tracker.to_commit()
                if offset is not None:
                    offsets.append(TopicPartition(topic, partition, offset))
        return offsets

    # --- time ------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Let time pass in the core (expiries, silent agents, leases, due retries)."""
        self._tick = None
        self._handle(self._take_follow_ups())

    def checkpoint(self, commit: Callable[[list[TopicPartition]], None]) -> None:
        """Start a checkpoint of every owned shard (unless one is under way); ``commit`` gets
        the offsets once it is done."""
        owned = list(self._states)
        done = self._checkpointer.take(dict(self._states), lambda: self.committable(owned))
        if done is not None:
            done.add_done_callback(lambda future: commit(future.result()))

    # --- internals -------------------------------------------------------------------------------

    def _handle(
        self, events: list[Event], results: Mapping[tuple[str, int], TaskResult] | None = None
    ) -> None:
        now_ms = self._clock()
        actions = self._core.handle(events, now_ms)
        if results:
            self._remember_unmatched(results.values(), now_ms)
        self._budget.handled(0, self._core.held)
        self._follow_ups += self._effects.carry_out(actions, results or {})
        self._plan_tick(now_ms)

    def _take_follow_ups(self) -> list[Event]:
        events, self._follow_ups = self._follow_ups, []
        return events

    def _plan_tick(self, now_ms: int) -> None:
        """Wake up at the core's next wake-up (at least every ``tick_ms``, sooner when follow-up
        events wait)."""
        wake_ms = self._core.next_wakeup_ms(now_ms)
        delay_ms = (
            self._config.tick_ms if wake_ms is None else min(wake_ms - now_ms, self._config.tick_ms)
        )
        if self._follow_ups:
            delay_ms = 0
        delay_s = max(_MIN_SLEEP_S, delay_ms / 1000)
        at = time.monotonic() + delay_s
        if self._tick is not None:
            if self._tick_at <= at:
                return
            self._tick.cancel()
        self._tick = asyncio.get_running_loop().call_later(delay_s, self.tick)
        self._tick_at = at

    def _decode(
        self,
        message: Message,
        now_ms: int,
        events: list[Event],
        results: dict[tuple[str, int], TaskResult],
    ) -> int:
        """Turn one record into events; 1 if it was a fresh task (for the received count)."""
        topic = message.topic() or ""
        partition = message.partition() or 0
        offset = message.offset() or 0
        tracker = self._tracker(topic, partition, offset)
        tracker.take(offset)
        raw = message.value() or b""
        kind, level = self._kinds[topic]
        try:
            if kind == _RESULT:
                self._results(raw, partition, events, results)
                tracker.finish(offset)
                return 0
            if kind == _CANCEL:
                request = self._codec.decode(raw, CancelRequest)
                log.info("cancel of task %s asked: %s", request.task_id, request.reason or "-")
                events.append(CancelRequested(request.task_id))
                tracker.finish(offset)
                return 0
            if kind == _TASK:
                task = decode_task(
                    raw,
                    codec=self._codec,
                    now_ms=now_ms,
                    levels=self._levels,
                    limits=self._limits,
                    topic_priority=level,
                    default_id=f"{topic}/{partition}/{offset}",
                    key=message.key(),
                )
                due_ms, preempted = None, 0
            else:
                task = validate_task(self._codec.decode(raw, Task), levels=self._levels, raw=raw)
                due_ms, preempted = _due_ms(message), _preempted(message)
        except (WireError, ValueError) as error:  # any record that is no valid task or result
            reason = (
                DeadLetterReason.TOO_LARGE
                if isinstance(error, TooLargeError)
                else DeadLetterReason.MALFORMED
            )
            self._effects.dead_letter_raw(raw, str(error), topic, partition, offset, reason)
            self._core.stats.intake_dead_lettered(reason)  # /status counts as /metrics does
            tracker.finish(offset)
            return 0
        origin = Origin(task, partition, topic=topic, offset=offset, tracker=tracker)
        events.append(TaskArrived(task_to_job(task, origin, preempted=preempted), due_ms))
        ran = self._ran_before_of(task, now_ms) if self._ran_before else None
        if ran is not None:  # read again after a restart, and its run then succeeded
            self._result_events(ran, events, results)
        return int(kind == _TASK and task.attempt == 0)

    def _results(
        self,
        raw: bytes,
        partition: int,
        events: list[Event],
        results: dict[tuple[str, int], TaskResult],
    ) -> None:
        """Queue time and deadlines are judged at the agent's ``started_at``, not when the
        result arrives; a REJECTED task never started. Results of a shard another instance
        owns are handed on to it."""
        elsewhere: dict[int, list[TaskResult]] = {}
        for result in self._codec.decode(raw, ResultBatch).results:
            shard = partition if result.shard is None else result.shard
            if shard not in self._states:
                elsewhere.setdefault(shard, []).append(result)
                continue
            self._result_events(result, events, results)
        for shard, handed_on in elsewhere.items():
            self._effects.forward_results(shard, handed_on)

    @staticmethod
    def _result_events(
        result: TaskResult, events: list[Event], results: dict[tuple[str, int], TaskResult]
    ) -> None:
        results[(result.task_id, result.attempt)] = result
        if result.status is not TaskStatus.REJECTED:
            events.append(
                TaskStarted(result.task_id, result.agent_id, result.attempt, result.started_at)
            )
        status = _RESULT_STATUS[result.status]
        no_handler = status is ResultStatus.REJECTED and (result.error or "").startswith(NO_HANDLER)
        preempted = status is ResultStatus.CANCELLED and result.error == PREEMPTED
        events.append(
            ResultReported(
                result.task_id,
                result.agent_id,
                result.attempt,
                status,
                result.error,
                no_handler=no_handler,
                preempted=preempted,
            )
        )

    def _tracker(self, topic: str, partition: int, offset: int) -> OffsetTracker:
        tracker = self._trackers.get((topic, partition))
        if tracker is None:
            tracker = self._trackers[(topic, partition)] = OffsetTracker(offset)
        return tracker


def heartbeat_of(
    record: AgentHeartbeat, *, slots: int | None = None, incarnation: int = 0
) -> Heartbeat:
    """The core's view of a heartbeat (``sent_ms`` only orders an agent's own heartbeats);
    ``slots``: the capacity the core counts (``DispatcherConfig.slots``), else the agent's;
    ``incarnation``: the epoch of the agent's claim."""
    return Heartbeat(
        agent_id=record.agent_id,
        capacity=record.capacity if slots is None else slots,
        skills=frozenset(record.skills),
        zone=record.zone,
        weight=record.weight,
        cost_per_task=record.cost_per_task,
        status=record.status.value,
        sent_ms=record.sent_at,
        incarnation=incarnation,
        task_types=None if record.task_types is None else frozenset(record.task_types),
        batch_handlers=batch_handlers_of(record),
    )


def batch_handlers_of(record: AgentHeartbeat) -> tuple[BatchHandler, ...]:
    """The batch handlers a heartbeat announces; one with a size below 1 or a negative wait
    (no agent of ours writes one) is left out rather than stop the dispatcher."""
    waits = dict(record.batch_max_wait_ms)
    return tuple(
        BatchHandler(task_type, size, waits.get(task_type, 0))
        for task_type, size in record.batch_max_size
        if size >= 1 and waits.get(task_type, 0) >= 0
    )


def _preempted(message: Message) -> int:
    """How many times the retry record's task was preempted (0 without the header)."""
    return _int_header(message, PREEMPTED_HEADER) or 0


def _due_ms(message: Message) -> int:
    """The retry record's due time from its headers; ValueError if it has none."""
    due_ms = _int_header(message, DUE_HEADER)
    if due_ms is None:
        raise ValueError(f"retry record without a {DUE_HEADER} header")
    return due_ms


def _int_header(message: Message, name: str) -> int | None:
    """A header of ASCII digits as an int; None without it, ValueError if it is no number."""
    value = record_header(message, name)
    return None if value is None else int(value.decode("ascii"))
