"""The distributor: scheduler, router, agent registry, leases and statistics composed as one.

Theory of operation. Events go in (:mod:`streams.core.events`: a task arrived, a heartbeat, a
result, a recovered lease), all those of one moment at once, with the time ``now_ms``;
decisions come out as :mod:`streams.core.actions`. :meth:`Distributor.handle` applies the
events in order, lets time pass up to ``now_ms`` (expired tasks, silent agents, leases run out,
retries due) and then releases waiting tasks to free slots in one pass. The dispatcher and the
simulator drive this very class, so what the simulator proves is what production runs.

Invariants:
- A task is dispatched only by the scheduler's release, through the router, to an agent the
  router found eligible; with late binding that agent had a free slot.
- Every live task is in exactly one phase of the lifecycle table (``lifecycle.py``): waiting
  for its retry, held by the scheduler, in flight, recovering after a restart, or sent to a
  retry tier. Ended tasks (completed or dead-lettered) are remembered in a bounded window, so
  that a duplicate delivery is dropped.
- An attempt is counted each time a task leaves an agent without success: a retryable failure,
  a lost agent, a lease that ran out, a rejection. When the attempts are spent it is
  dead-lettered; it is never dropped. A run stopped for a more urgent task (preemption,
  ``preemption.py``) is not counted: its task goes back to the queue as it was, but for
  ``Job.preempted``, one higher.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from streams.core.actions import (
    Action,
    Cancelled,
    Completed,
    DeadLetter,
    Dispatch,
    Dropped,
    Finished,
    PauseIntake,
    Requeued,
    ResultStatus,
    ResumeIntake,
    Retry,
    StopRun,
)
from streams.core.agents import AgentRegistry, HealthConfig, Heartbeat, Transition
from streams.core.events import (
    AgentLeft,
    CancelRequested,
    EndedRecovered,
    Event,
    HeartbeatReceived,
    InFlightRecovered,
    ResultReported,
    SlotsResized,
    TaskArrived,
    TaskStarted,
    Withdrawn,
)
from streams.core.grouping import Grouping, GroupingConfig, GroupingPlacer
from streams.core.leases import InFlight, Lease
from streams.core.lifecycle import Lifecycle, Phase, Step
from streams.core.model import AgentInfo, AgentState, DeadLetterReason, Job
from streams.core.ordering import KeyQueues
from streams.core.placer import RoutingPlacer
from streams.core.preemption import PreemptionConfig, UrgentWatch
from streams.core.routing import Router, RoutingConfig
from streams.core.scheduling import OfferResult, Released, Scheduler, SchedulerConfig
from streams.core.scheduling.queues import class_of
from streams.core.stats import Statistics
from streams.core.window import LruMap
from streams.errors import ConfigError

TransitionObserver = Callable[[Transition, AgentInfo], None]
"""Told of a change of an agent's health with the agent as it is then (its ``in_flight``: the
tasks a DOWN agent held, still counted)."""


@dataclass(frozen=True, slots=True)
class DistributorConfig:
    """Everything the core needs; built from the settings at the entry point."""

    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    lease_ms: int = 300_000
    """How long an agent may hold a task before it is taken back (failover)."""
    retry_backoffs_ms: tuple[int, ...] = (1_000, 10_000, 60_000)
    """Backoff of each retry tier; attempt n waits in tier min(n, last)."""
    dedupe_window: int = 100_000
    """How many ended task ids are remembered to drop duplicate deliveries."""
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    """Which levels may stop a running task of a less urgent one, after how long (off)."""

    def __post_init__(self) -> None:
        self.preemption.check_levels(self.scheduler.levels)
        if self.lease_ms <= 0:
            raise ConfigError(f"lease_ms must be > 0 (got {self.lease_ms})")
        if not self.retry_backoffs_ms or any(b <= 0 for b in self.retry_backoffs_ms):
            raise ConfigError("retry_backoffs_ms needs at least one tier, every backoff > 0 ms")
        if self.dedupe_window < 0:
            raise ConfigError(f"dedupe_window must be >= 0 (got {self.dedupe_window})")


@dataclass(slots=True)
class _Recovering:
    """The recovered leases of one agent not heard from yet, and when to give up on it."""

    until_ms: int
    task_ids: list[str]


class Distributor:
    """The whole distribution logic behind one event interface (see the module docstring)."""

    def __init__(
        self,
        config: DistributorConfig,
        stats: Statistics | None = None,
        *,
        on_transition: TransitionObserver | None = None,
    ) -> None:
        self.config = config
        self.on_transition = on_transition
        """Told of each change of an agent's health, before what it causes (a DOWN agent's
        tasks going back to the queue) is done: the dispatcher logs them."""
        self.stats = stats if stats is not None else Statistics(config.scheduler.levels)
        self._registry = AgentRegistry(config.health)
        self._in_flight = InFlight(self._registry)
        self._grouping = Grouping(config.grouping)
        self._released_ms: int | None = None
        """When the last release pass ran: a group due by then was tried in it."""
        self._scheduler = Scheduler(config.scheduler, observer=self._grouping.waiting)
        self._router = Router(config.routing)
        self._tasks = Lifecycle()
        self._ended: LruMap[str, None] | None = (
            LruMap(config.dedupe_window) if config.dedupe_window else None
        )
        self._due: list[tuple[int, int, str]] = []
        """Heap of (due ms, seq, task id) of the WAITING tasks."""
        self._seq = 0
        self._recovering: dict[str, _Recovering] = {}
        self._run_lost: list[Lease] = []
        """Recovered leases whose agent restarted or stopped: their run is lost, unless a result
        handled in the same pass (one read back at recovery) says it ended."""
        self._keys = KeyQueues()
        self._turns: deque[str] = deque()
        """Tasks whose key's earlier tasks all ended: offered to the scheduler in this pass."""
        self._behind_full = False
        self._cancel_early: LruMap[str, None] = LruMap(CANCEL_WINDOW)
        """Cancels of tasks not arrived yet: cancelled as they arrive."""
        self._cancelling: set[str] = set()
        """Running tasks told to stop: whatever ends their run ends them CANCELLED."""
        self._preempt_on = config.preemption.enabled
        self._urgent = UrgentWatch(config.preemption, self._is_held)
        """Held tasks of the levels that may preempt, by when they become overdue."""
        self._preempting: dict[str, str] = {}
        """Runs told to stop for a more urgent task -> that task: their slot is its."""
        self._claimed: set[str] = set()
        """Urgent tasks with a run stopping for them (one victim each at a time)."""
        self._handoffs: list[tuple[str, str]] = []
        """(urgent task, agent) of the slots freed by preemption in this pass: theirs first."""
        self._connected = True
        self._paused = False
        self._reported_capacity: dict[str, int] = {}

    # --- events ------------------------------------------------------------------------------

    def handle(self, events: Iterable[Event], now_ms: int) -> list[Action]:
        """Apply ``events`` in order, let time pass to ``now_ms``, then release to free slots."""
        actions: list[Action] = []
        for event in events:
            self._apply(event, now_ms, actions)
        self._advance(now_ms, actions)
        self._release(now_ms, actions)
        return actions

    def tick(self, now_ms: int) -> list[Action]:
        """Time passes with nothing else happening: ``handle((), now_ms)``."""
        return self.handle((), now_ms)

    def set_connected(self, connected: bool, now_ms: int) -> None:
        """Whether the dispatcher hears from the broker (the adapter knows: its own records
        come back). While it does not, silence proves nothing: no agent goes SUSPECT or DOWN, no
        lease runs out and no recovered lease is given up. Once it does again, silence counts
        from ``now_ms`` and every lease and recovery wait has at least ``down_after_ms`` more:
        time for the agents' heartbeats and results held during the outage to arrive."""
        if connected == self._connected:
            return
        self._connected = connected
        if not connected:
            return
        grace_ms = now_ms + self._registry.config.down_after_ms
        self._registry.hear_again(now_ms)
        self._in_flight.extend_all(grace_ms)
        for wait in self._recovering.values():
            wait.until_ms = max(wait.until_ms, grace_ms)

    @property
    def connected(self) -> bool:
        """Whether the dispatcher hears from the broker (``set_connected``)."""
        return self._connected

    def next_wakeup_ms(self, now_ms: int) -> int | None:
        """The earliest time at which ``tick`` would change something by itself."""
        times = [self._scheduler.next_wakeup_ms(now_ms), self._due[0][0] if self._due else None]
        if self._preempt_on:
            times.append(self._urgent.next_ms())
        if self._connected:  # else silence and leases wait for the link (set_connected)
            times += [self._group_due_ms(), self._registry.next_wakeup_ms(now_ms)]
            if not self._registry.fleet_silent(now_ms):  # else leases and recovered leases
                times += [  # wait for a heartbeat (``_lose_silent``)
                    self._in_flight.next_expiry_ms(),
                    min((wait.until_ms for wait in self._recovering.values()), default=None),
                ]
        pending = [t for t in times if t is not None]
        return min(pending) if pending else None

    def _group_due_ms(self) -> int | None:
        """When a held group becomes due, of those not due at the last release pass already:
        what holds those (no free or capable agent) changes with an event, not with time, and
        a wake-up in the past would make a driver spin until then."""
        return self._grouping.next_release_ms(self._registry.get, self._released_ms)

    # --- queries -----------------------------------------------------------------------------

    def is_duplicate(self, job: Job) -> bool:
        """Whether ``handle`` would drop ``job`` (a :class:`Dropped` action): the task ended
        recently (same replay), or is known and this is not the retry it waits for."""
        if self._ended is not None and job.dedupe_key in self._ended:
            return True
        record = self._tasks.get(job.task_id)
        if record is None:
            return False
        return record.phase is not Phase.RETRYING or job.attempt < record.job.attempt

    def ended_recently(self, dedupe_key: str) -> bool:
        """Whether a task of ``dedupe_key`` ended within the duplicate window."""
        return self._ended is not None and dedupe_key in self._ended

    def phase_of(self, task_id: str) -> Phase | None:
        """Where a live task is; None when it is not known (never seen, or ended)."""
        record = self._tasks.get(task_id)
        return None if record is None else record.phase

    def lease_of(self, task_id: str) -> Lease | None:
        """The lease of an IN_FLIGHT task."""
        return self._in_flight.get(task_id)

    def agents(self) -> Sequence[AgentInfo]:
        """Every agent seen (DOWN ones too), in order of registration; read-only views."""
        return self._registry.agents

    def heard_at(self, agent_id: str) -> int | None:
        """When the agent's last accepted heartbeat came in (None: not known)."""
        return self._registry.heard_at(agent_id)

    def preempting_for(self, task_id: str) -> str | None:
        """The urgent task whose wait the run of ``task_id`` is stopping for (preemption)."""
        return self._preempting.get(task_id)

    def depth_by_priority(self) -> dict[int, int]:
        """Held tasks per submitted priority level, every level present."""
        return self._scheduler.depth_by_priority()

    def without_capable_agent(self) -> dict[str, int]:
        """Held tasks no live agent can run, per task type (``Scheduler``)."""
        return self._scheduler.without_capable_agent()

    def late_binding(self, job: Job) -> bool:
        """False when the job's strategy is a push baseline (the agent queues it locally)."""
        return self._router.late_binding(job)

    @property
    def behind(self) -> int:
        """Tasks waiting behind an earlier task of their ordering key."""
        return self._keys.behind

    @property
    def held(self) -> int:
        """Tasks waiting in the scheduler's queues."""
        return self._scheduler.held

    @property
    def in_flight(self) -> int:
        """Tasks leased to agents (recovered leases not yet confirmed not counted)."""
        return len(self._in_flight)

    @property
    def intake_paused(self) -> bool:
        """Back-pressure: the scheduler holds its maximum (see ``PauseIntake``)."""
        return self._scheduler.paused

    def count(self, phase: Phase) -> int:
        """How many live tasks are in ``phase``."""
        return self._tasks.count(phase)

    # --- applying one event ------------------------------------------------------------------

    def _apply(self, event: Event, now_ms: int, actions: list[Action]) -> None:
        if isinstance(event, TaskArrived):
            self._arrived(event.job, event.due_ms, now_ms, actions)
        elif isinstance(event, ResultReported):
            self._result(event, now_ms, actions)
        elif isinstance(event, TaskStarted):
            self._started(event)
        elif isinstance(event, HeartbeatReceived | SlotsResized | AgentLeft):
            self._agent_event(event, now_ms, actions)
        elif isinstance(event, InFlightRecovered):
            self._recovered(event, now_ms, actions)
        elif isinstance(event, EndedRecovered):
            self._remember_ended(event.dedupe_key)
        elif isinstance(event, Withdrawn):
            for task_id in event.task_ids:
                self._withdraw(task_id, now_ms)
        elif isinstance(event, CancelRequested):
            self._cancel(event.task_id, now_ms, actions)

    def _agent_event(
        self,
        event: HeartbeatReceived | SlotsResized | AgentLeft,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        if isinstance(event, HeartbeatReceived):
            self._heartbeat(event.heartbeat, now_ms, actions)
        elif isinstance(event, SlotsResized):
            if self._registry.resize(event.agent_id, event.capacity):
                self._report_capacity(event.agent_id, now_ms)
        else:
            self._left(event.agent_id, now_ms, actions)

    def _arrived(self, job: Job, due_ms: int | None, now_ms: int, actions: list[Action]) -> None:
        if self.is_duplicate(job):
            actions.append(Dropped(job))
            return
        if job.attempt == 0:
            self.stats.task_received(job, now_ms)
        if job.task_id in self._cancel_early:  # cancelled before it arrived
            self._cancel_early.discard(job.task_id)
            self._end_cancelled(job, now_ms, actions)
            return
        key = job.ordering_key
        if key is not None and not self._keys.enter(key, job.task_id):
            self._tasks.move(job.task_id, job, Step.PARK)
            return
        if due_ms is not None and due_ms > now_ms:
            record = self._tasks.move(job.task_id, job, Step.WAIT)
            assert record is not None
            record.due_ms = due_ms
            self._seq += 1
            heapq.heappush(self._due, (due_ms, self._seq, job.task_id))
            return
        self._offer(job, now_ms, actions)

    def _offer(self, job: Job, now_ms: int, actions: list[Action]) -> None:
        """Hand ``job`` to the scheduler: HELD, or dead-lettered when already expired."""
        outcome = self._scheduler.offer(job, now_ms)
        if outcome is OfferResult.EXPIRED:
            why = "expired before dispatch"
            actions.append(self._dead_letter(job, DeadLetterReason.EXPIRED, why, now_ms))
            return
        assert outcome is OfferResult.HELD  # the lifecycle knew it was not held
        self._tasks.move(job.task_id, job, Step.ARRIVE)
        self._urgent.watch(job)

    def _started(self, event: TaskStarted) -> None:
        record = self._tasks.get(event.task_id)
        lease = self._in_flight.get(event.task_id)
        if record is None or lease is None or not _same_run(lease, event.agent_id, event.attempt):
            return
        record.started_ms = event.at_ms
        self.stats.task_started(lease.job, event.agent_id, event.at_ms)

    def _result(self, event: ResultReported, now_ms: int, actions: list[Action]) -> None:
        """Frees the slot; retries, dead-letters, requeues or completes the task. A result of
        another run (the task was failed over and runs elsewhere) is ignored."""
        record = self._tasks.get(event.task_id)
        if record is None:
            return
        if _ran_before(record.phase, record.job, event):
            self._ended_before(record.job, event, now_ms, actions)
            return
        if record.phase is Phase.RECOVERING:
            lease = record.lease
            if lease is None or not _same_run(lease, event.agent_id, event.attempt):
                return
            self._stop_recovering(lease)
        else:
            lease = self._in_flight.get(event.task_id)
            if lease is None or not _same_run(lease, event.agent_id, event.attempt):
                return
            self._in_flight.finish(event.task_id, event.attempt)
        self._scheduler.task_finished(lease.job)
        started_ms = record.started_ms
        if started_ms is None:
            self.stats.task_started(lease.job, event.agent_id, now_ms)
            started_ms = lease.dispatched_ms
        succeeded = event.status is ResultStatus.SUCCEEDED
        if self._registry.get(event.agent_id) is not None:
            self._registry.record_result(event.agent_id, max(0, now_ms - started_ms), succeeded)
        self.stats.task_finished(lease.job, event.agent_id, now_ms, event.status.value)
        actions.append(Finished(lease.job, event.agent_id, event.status))
        preempted_for = self._slot_freed(event.task_id, event.agent_id)
        stopped = event.status is ResultStatus.CANCELLED and event.task_id not in self._cancelling
        if stopped and (preempted_for is not None or event.preempted):
            self.stats.task_preempted(now_ms - started_ms)
            cause = f"preempted for {preempted_for or 'a more urgent task'}"
            self._take_back(
                lease, cause, now_ms, actions, run_counted=True, spent=False, preempted=True
            )
            return
        no_handler = event.no_handler and event.status is ResultStatus.REJECTED
        if no_handler and event.task_id not in self._cancelling:
            self._registry.refuse_type(event.agent_id, lease.job.task_type)
            cause = event.error or f"no handler for type {lease.job.task_type}"
            self._take_back(lease, cause, now_ms, actions, run_counted=True, spent=False)
            return
        self._settle(lease, event.status, event.error, now_ms, actions)

    def _ended_before(
        self, job: Job, event: ResultReported, now_ms: int, actions: list[Action]
    ) -> None:
        """A task read again after a restart, which this dispatcher has not sent yet, has a
        result of that very attempt: its run before the restart succeeded. It ends with it
        instead of running again (its queue time counts up to now: its start is not known)."""
        self._scheduler.remove(job.task_id)  # None when it waits for its retry's due time
        self.stats.task_started(job, event.agent_id, now_ms)
        self.stats.task_finished(job, event.agent_id, now_ms, event.status.value)
        actions.append(Finished(job, event.agent_id, event.status))
        self._end(job)
        actions.append(Completed(job, event.agent_id, event.status))

    def _heartbeat(self, hb: Heartbeat, now_ms: int, actions: list[Action]) -> None:
        """Registers or updates the agent (a new incarnation first loses what the old one held:
        ``agents.py``, invariant 8); recovered leases of this incarnation count again. The
        first heartbeat after the whole fleet's silence gives every lease ``down_after_ms``
        more: no result could arrive meanwhile either (``agents.py``, invariant 10)."""
        if self._registry.fleet_silent(now_ms):
            self._in_flight.extend_all(now_ms + self._registry.config.down_after_ms)
        for transition in self._registry.heartbeat(hb, now_ms):
            self._on_transition(transition, now_ms, actions)
        self._grouping.heard(hb.agent_id, hb.batch_handlers, self._scheduler.held_of_type)
        self._report_capacity(hb.agent_id, now_ms)
        waiting = self._recovering.pop(hb.agent_id, None)
        if waiting is None:
            return
        agent = self._registry.get(hb.agent_id)
        alive = agent is not None and agent.state is not AgentState.DOWN
        incarnation = self._registry.incarnation(hb.agent_id) if alive else None
        for task_id in waiting.task_ids:
            self._confirm(task_id, incarnation, now_ms, actions)

    def _left(self, agent_id: str, now_ms: int, actions: list[Action]) -> None:
        for transition in self._registry.leave(agent_id, now_ms):
            self._on_transition(transition, now_ms, actions)

    def _recovered(self, event: InFlightRecovered, now_ms: int, actions: list[Action]) -> None:
        """A lease from before a restart: counted again once its agent is heard from."""
        job = event.job
        if self.is_duplicate(job):
            actions.append(Dropped(job))
            return
        record = self._tasks.move(job.task_id, job, Step.RECOVER)
        assert record is not None
        if job.ordering_key is not None:  # read back before any input: the key's head
            self._keys.enter(job.ordering_key, job.task_id)
        record.lease = Lease(
            job,
            event.agent_id,
            job.attempt,
            0,
            event.dispatched_ms,
            event.dispatched_ms + event.lease_ms,
            event.incarnation,
        )
        agent = self._registry.get(event.agent_id)
        if agent is not None and agent.state is not AgentState.DOWN:
            self._confirm(job.task_id, self._registry.incarnation(event.agent_id), now_ms, actions)
            return
        until_ms = now_ms + self.config.health.down_after_ms
        waiting = self._recovering.setdefault(event.agent_id, _Recovering(until_ms, []))
        waiting.task_ids.append(job.task_id)

    def _confirm(
        self, task_id: str, incarnation: int | None, now_ms: int, actions: list[Action]
    ) -> None:
        """The agent of a recovered lease was heard from: the same incarnation keeps running it;
        another one, or an agent stopping (``incarnation`` None), lost it."""
        record = self._tasks.get(task_id)
        if record is None or record.phase is not Phase.RECOVERING or record.lease is None:
            return  # it ended meanwhile (its result came first)
        lease = record.lease
        if lease.incarnation != incarnation:
            self._run_lost.append(lease)  # taken back at the end of the pass (_advance)
            return
        self._tasks.move(task_id, lease.job, Step.CONFIRM)
        restored = replace(lease, epoch=self._registry.epoch(lease.agent_id))
        self._in_flight.restore(restored)
        if task_id in self._cancelling:  # cancelled while its agent was not heard: stop it now
            actions.append(StopRun(restored.job, restored.agent_id, restored.epoch))

    # --- cancelling ----------------------------------------------------------------------------

    def _cancel(self, task_id: str, now_ms: int, actions: list[Action]) -> None:
        """Drop a task that waits (CANCELLED), tell the agent of one that runs to stop it, and
        remember a cancel that came before its task (a window of ``CANCEL_WINDOW``)."""
        record = self._tasks.get(task_id)
        if record is None:
            self._cancel_early.put(task_id, None)
            return
        if record.phase is Phase.HELD:
            self._scheduler.remove(task_id)
        if record.phase in _WAITING_PHASES:
            self._end_cancelled(record.job, now_ms, actions)
            return
        if task_id in self._cancelling:
            return
        self._cancelling.add(task_id)
        if record.phase is Phase.IN_FLIGHT:
            lease = self._in_flight.get(task_id)
            assert lease is not None
            actions.append(StopRun(lease.job, lease.agent_id, lease.epoch))
        # RECOVERING: its agent is told once it is heard from again (``_confirm``)

    def _end_cancelled(self, job: Job, now_ms: int, actions: list[Action]) -> None:
        self.stats.task_cancelled(job.task_id, now_ms)
        self._end(job)
        actions.append(Cancelled(job))

    def _withdraw(self, task_id: str, now_ms: int) -> None:
        """Forget a task handed to another driver: out of the queues and the statistics (the
        other driver counts it from now), its slot freed."""
        record = self._tasks.get(task_id)
        if record is None:
            return
        self.stats.task_withdrawn(task_id, now_ms)
        if record.phase is Phase.HELD:
            self._scheduler.remove(task_id)
        elif record.phase is Phase.IN_FLIGHT:
            lease = self._in_flight.finish(task_id, record.job.attempt)
            if lease is not None:
                self._scheduler.task_finished(lease.job)
        elif record.phase is Phase.RECOVERING and record.lease is not None:
            self._stop_recovering(record.lease)
        self._tasks.move(task_id, record.job, Step.WITHDRAW)
        self._key_left(record.job)
        self._cancelling.discard(task_id)
        self._forget_preemption(task_id)

    def jobs(self) -> list[Job]:
        """Every live task's job (a copy): what a driver handing work over needs to name."""
        return self._tasks.jobs()

    def _stop_recovering(self, lease: Lease) -> None:
        waiting = self._recovering.get(lease.agent_id)
        if waiting is not None and lease.task_id in waiting.task_ids:
            waiting.task_ids.remove(lease.task_id)
            if not waiting.task_ids:
                del self._recovering[lease.agent_id]

    # --- time --------------------------------------------------------------------------------

    def _advance(self, now_ms: int, actions: list[Action]) -> None:
        """Retries come due, tasks expire, silent agents and run-out leases lose their tasks,
        recovered leases whose agent restarted or stayed silent go back to the queue."""
        while self._due and self._due[0][0] <= now_ms:
            _, _, task_id = heapq.heappop(self._due)
            record = self._tasks.get(task_id)
            if record is not None and record.phase is Phase.WAITING:
                self._offer(record.job, now_ms, actions)
        for removed in self._scheduler.expire(now_ms):
            actions.append(
                self._dead_letter(removed.job, removed.reason, _why(removed.reason), now_ms)
            )
        self._take_back_lost_runs(now_ms, actions)
        if self._connected:  # else silence and run-out leases prove nothing (set_connected)
            self._lose_silent(now_ms, actions)
        self._take_turns(now_ms, actions)
        if self._preempt_on:
            self._urgent.advance(now_ms)

    def _lose_silent(self, now_ms: int, actions: list[Action]) -> None:
        """Silent agents, run-out leases and recovered leases of agents that stayed away lose
        their tasks."""
        for transition in self._registry.tick(now_ms):
            self._on_transition(transition, now_ms, actions)
        if self._registry.fleet_silent(now_ms):
            return  # a run-out lease proves nothing either while no agent is heard
        for lease in self._in_flight.expired(now_ms):
            self._take_back(lease, "lease expired", now_ms, actions)
        for agent_id in [a for a, wait in self._recovering.items() if wait.until_ms <= now_ms]:
            for task_id in self._recovering.pop(agent_id).task_ids:
                record = self._tasks.get(task_id)
                if record is not None and record.lease is not None:
                    cause = f"agent {agent_id} did not come back"
                    self._take_back(record.lease, cause, now_ms, actions)

    def _take_back_lost_runs(self, now_ms: int, actions: list[Action]) -> None:
        """Recovered leases of an agent that restarted or stopped, no result having ended them
        in this pass, go back to the queue."""
        for lease in self._run_lost:
            record = self._tasks.get(lease.job.task_id)
            if record is not None and record.phase is Phase.RECOVERING and record.lease is lease:
                cause = f"agent {lease.agent_id} restarted or stopped"
                self._take_back(lease, cause, now_ms, actions)
        self._run_lost.clear()

    # --- releasing ---------------------------------------------------------------------------

    def _release(self, now_ms: int, actions: list[Action]) -> None:
        self._released_ms = now_ms
        if self._scheduler.held == 0:
            self._handoffs.clear()  # the urgent tasks went meanwhile
            self._intake_signal(actions)  # nothing waits: skip building a placer
            return
        self._hand_over(now_ms, actions)
        routing = RoutingPlacer(
            self._router, self._registry, self._in_flight, self.config.lease_ms, now_ms
        )
        grouping = (  # no agent announces a batch handler: nothing to group, skip the wrapper
            GroupingPlacer(routing, self._grouping, self._registry.get, now_ms)
            if self._grouping.active
            else None
        )
        for released in self._scheduler.release(now_ms, grouping or routing):
            job, agent_id = released.job, released.agent_id
            affinity_hit = routing.affinity_hits.get(job.task_id)
            grouped = grouping is not None and grouping.in_group(job.task_type, agent_id)
            self._dispatched(released, now_ms, actions, affinity_hit, grouped=grouped)
        if self._preempt_on and self._scheduler.held > 0:
            self._preempt(now_ms, actions)
        self._intake_signal(actions)

    def _dispatched(
        self,
        released: Released,
        now_ms: int,
        actions: list[Action],
        affinity_hit: bool | None,
        *,
        grouped: bool = False,
    ) -> None:
        """A task was placed on an agent (its lease taken): it is in flight; tell the driver
        (``grouped``: it goes in a group for a batch handler)."""
        job = released.job
        lease = self._in_flight.get(job.task_id)
        assert lease is not None  # the placer took the lease
        self._tasks.move(job.task_id, job, Step.RELEASE)
        agent = self._registry.get(released.agent_id)
        inversion = (
            agent is not None
            and self._scheduler.held > 0
            and self._scheduler.has_waiting(released.effective_priority, agent.can_run)
        )
        self.stats.task_dispatched(
            job, released.agent_id, now_ms, inversion=inversion, affinity_hit=affinity_hit
        )
        actions.append(
            Dispatch(
                job,
                released.agent_id,
                lease.incarnation,
                self.config.lease_ms,
                now_ms,
                grouped=grouped,
            )
        )

    # --- preempting ----------------------------------------------------------------------------

    def _is_held(self, task_id: str) -> bool:
        record = self._tasks.get(task_id)
        return record is not None and record.phase is Phase.HELD

    def _preempt(self, now_ms: int, actions: list[Action]) -> None:
        """Stop a preemptible run for each urgent task overdue (``preemption.py``): after the
        release, so each one still held has no free slot it could use."""
        victim_levels = self.config.preemption.victims
        if not any(self._in_flight.count_of_priority(level) for level in victim_levels):
            return  # nothing to preempt: skip looking at the overdue tasks
        no_victim: set[tuple[object, ...]] = set()
        for job in self._urgent.overdue():
            if job.task_id in self._claimed:
                continue  # a run is stopping for it already
            alike = (class_of(job), job.priority, job.tenant, job.zone)
            if alike in no_victim:
                continue
            lease = self._victim_for(job, now_ms)
            if lease is None:
                no_victim.add(alike)
                continue
            self._preempting[lease.task_id] = job.task_id
            self._claimed.add(job.task_id)
            actions.append(StopRun(lease.job, lease.agent_id, lease.epoch, preempted=True))

    def _victim_for(self, job: Job, now_ms: int) -> Lease | None:
        """The youngest run of the least urgent preemptible level on an agent ``job`` could
        run on; None when a slot freed would not go to ``job`` (a quota holds it back, a
        capable agent has a free slot yet it waits, or the strategy queues at agents)."""
        if not self._router.late_binding(job) or not self._scheduler.admits(job, now_ms):
            return None
        registry = self._registry
        capable = self._router.candidates(job, registry.agents, registry.membership_version)
        if not capable or any(agent.free_slots > 0 for agent in capable):
            return None
        where = {agent.agent_id for agent in capable}
        limit = self.config.preemption.max_per_task
        for level in self.config.preemption.victim_levels_for(job):
            for lease in self._in_flight.youngest_of_priority(level):
                task_id = lease.task_id
                if (
                    lease.agent_id in where
                    and task_id not in self._preempting
                    and task_id not in self._cancelling
                    and lease.job.preempted < limit  # no thrash
                ):
                    return lease
        return None

    def _slot_freed(self, task_id: str, agent_id: str) -> str | None:
        """The run of ``task_id`` on ``agent_id`` ended: if it was stopped for an urgent task,
        that task gets its slot in this pass (``_hand_over``); returns that task's id."""
        urgent_id = self._preempting.pop(task_id, None)
        if urgent_id is not None:
            self._claimed.discard(urgent_id)
            self._handoffs.append((urgent_id, agent_id))
        return urgent_id

    def _hand_over(self, now_ms: int, actions: list[Action]) -> None:
        """Dispatch each urgent task to the slot freed for it, before anything else may take
        the slot; one that went meanwhile (elsewhere, cancelled, expired) or that its tenant's
        quota holds back now leaves it to all."""
        handoffs, self._handoffs = self._handoffs, []
        for urgent_id, agent_id in handoffs:
            record = self._tasks.get(urgent_id)
            agent = self._registry.get(agent_id)
            if record is None or record.phase is not Phase.HELD or agent is None:
                continue
            job = record.job
            usable = agent.accepts_work and agent.free_slots > 0
            if not (usable and agent.can_run(job) and agent.handles(job.task_type)):
                continue
            if not self._scheduler.admits(job, now_ms):  # the quota was checked at the stop
                continue
            released = self._scheduler.claim(urgent_id, agent_id, now_ms)
            assert released is not None  # HELD is held by the scheduler
            self._in_flight.assign(released.job, agent_id, now_ms, self.config.lease_ms)
            self._dispatched(released, now_ms, actions, None)

    def _forget_preemption(self, task_id: str) -> None:
        """The task left (ended, or withdrawn): nothing of a preemption of it or for it."""
        self._claimed.discard(task_id)
        urgent_id = self._preempting.pop(task_id, None)
        if urgent_id is not None:
            self._claimed.discard(urgent_id)

    def _take_turns(self, now_ms: int, actions: list[Action]) -> None:
        """Offer the tasks whose key's earlier tasks all ended (one expiring ends its turn and
        hands it on, in the same loop)."""
        while self._turns:
            record = self._tasks.get(self._turns.popleft())
            if record is not None and record.phase is Phase.BEHIND:
                self._offer(record.job, now_ms, actions)

    def _intake_signal(self, actions: list[Action]) -> None:
        """Pause reading while the scheduler holds too much, or too many tasks wait behind
        their keys (a hot key must not grow without bound); resume below ``resume_at``."""
        behind = self._keys.behind
        scheduler = self.config.scheduler
        if behind >= scheduler.max_held:
            self._behind_full = True
        elif behind <= scheduler.resume_threshold:
            self._behind_full = False
        paused = self._scheduler.paused or self._behind_full
        if paused != self._paused:
            self._paused = paused
            actions.append(PauseIntake() if paused else ResumeIntake())

    # --- settling ----------------------------------------------------------------------------

    def _settle(
        self,
        lease: Lease,
        status: ResultStatus,
        error: str | None,
        now_ms: int,
        actions: list[Action],
    ) -> None:
        job = lease.job
        if job.task_id in self._cancelling and status is not ResultStatus.SUCCEEDED:
            status = ResultStatus.CANCELLED  # stopped, or ended otherwise after the cancel
        if status in (ResultStatus.SUCCEEDED, ResultStatus.CANCELLED):
            self._end(job)
            actions.append(Completed(job, lease.agent_id, status))
        elif status is ResultStatus.FAILED:
            actions.append(
                self._dead_letter(job, DeadLetterReason.FAILED, error or "failed", now_ms)
            )
        elif status is ResultStatus.REJECTED:
            cause = error or "rejected by the agent"
            self._take_back(lease, cause, now_ms, actions, run_counted=True)
        else:
            actions.append(self._retry(job, error, now_ms))

    def _retry(self, job: Job, error: str | None, now_ms: int) -> Action:
        if job.attempt + 1 >= job.max_attempts:
            reason = DeadLetterReason.MAX_ATTEMPTS
            return self._dead_letter(job, reason, error or "attempts spent", now_ms)
        tier = min(job.attempt, len(self.config.retry_backoffs_ms) - 1)
        due_ms = now_ms + self.config.retry_backoffs_ms[tier]
        again = replace(job, attempt=job.attempt + 1)
        self._tasks.move(job.task_id, again, Step.RETRY)
        return Retry(again, tier, due_ms, error)

    def _on_transition(self, transition: Transition, now_ms: int, actions: list[Action]) -> None:
        agent_id = transition.agent_id
        if self.on_transition is not None:
            agent = self._registry.get(agent_id)
            assert agent is not None  # a transition is of a registered agent
            self.on_transition(transition, agent)
        self._report_capacity(agent_id, now_ms)
        if transition.after is not AgentState.DOWN:
            return
        self._router.forget(agent_id)
        for lease in self._in_flight.lost_with(agent_id):
            self._take_back(lease, f"agent {agent_id} is down", now_ms, actions)

    def _take_back(
        self,
        lease: Lease,
        cause: str,
        now_ms: int,
        actions: list[Action],
        *,
        run_counted: bool = False,
        spent: bool = True,
        preempted: bool = False,
    ) -> None:
        """Failover: the run is lost; count the attempt and queue the task again.
        ``run_counted``: its end was already counted (a result, REJECTED); ``spent`` False: the
        attempt was never run (no handler), so it is not counted; ``preempted``: the run was
        stopped for a more urgent task, which the task carries on (``Job.preempted``)."""
        job = lease.job
        record = self._tasks.get(job.task_id)
        if record is not None and record.phase is Phase.RECOVERING:
            self._stop_recovering(lease)
        if self._slot_freed(job.task_id, lease.agent_id) is not None and not run_counted:
            spent = False  # lost after the stop for preemption: the stop may be what ended it
            preempted = True
        if not run_counted:
            self._scheduler.task_finished(job)
            self.stats.task_finished(job, lease.agent_id, now_ms, "LOST")
        if job.task_id in self._cancelling:  # told to stop: its loss ends it
            self._end(job)
            actions.append(Completed(job, lease.agent_id, ResultStatus.CANCELLED))
            return
        if spent and job.attempt + 1 >= job.max_attempts:
            actions.append(self._dead_letter(job, DeadLetterReason.MAX_ATTEMPTS, cause, now_ms))
            return
        again = replace(
            job,
            attempt=job.attempt + 1 if spent else job.attempt,
            preempted=job.preempted + 1 if preempted else job.preempted,
        )
        if self._scheduler.offer(again, now_ms) is OfferResult.EXPIRED:
            actions.append(self._dead_letter(again, DeadLetterReason.EXPIRED, cause, now_ms))
            return
        self._tasks.move(job.task_id, again, Step.TAKE_BACK)
        self._urgent.watch(again)
        actions.append(Requeued(again, lease.agent_id, cause))

    def _dead_letter(
        self, job: Job, reason: DeadLetterReason, error: str, now_ms: int
    ) -> DeadLetter:
        self._end(job)
        self.stats.task_dead_lettered(job, reason, now_ms)
        return DeadLetter(job, reason, error, job.attempt + 1)

    def _end(self, job: Job) -> None:
        """The task leaves the table; its dedupe key is remembered."""
        self._tasks.move(job.task_id, job, Step.END)
        self._remember_ended(job.dedupe_key)
        self._key_left(job)
        self._cancelling.discard(job.task_id)
        self._forget_preemption(job.task_id)

    def _key_left(self, job: Job) -> None:
        """A task left: the next of its key, if it was the key's head, takes its turn."""
        key = job.ordering_key
        if key is not None:
            turn = self._keys.leave(key, job.task_id)
            if turn is not None:
                self._turns.append(turn)

    def _remember_ended(self, dedupe_key: str) -> None:
        if self._ended is not None:
            self._ended.put(dedupe_key, None)

    def _report_capacity(self, agent_id: str, now_ms: int) -> None:
        """Tell the statistics an agent's usable capacity whenever it changes."""
        capacity = self._capacity_of(agent_id)
        if self._reported_capacity.get(agent_id) != capacity:
            self._reported_capacity[agent_id] = capacity
            self.stats.agent_capacity(agent_id, capacity, now_ms)

    def _capacity_of(self, agent_id: str) -> int:
        agent = self._registry.get(agent_id)
        return agent.capacity if agent is not None and agent.state is AgentState.READY else 0


CANCEL_WINDOW = 10_000
"""Cancels of tasks not seen yet that are remembered (the oldest forgotten first)."""
_WAITING_PHASES = frozenset({Phase.HELD, Phase.WAITING, Phase.RETRYING, Phase.BEHIND})
"""Where a task is not running: a cancel ends it at once."""


def _ran_before(phase: Phase, job: Job, event: ResultReported) -> bool:
    """Whether ``event`` is the success of the attempt ``job`` waits to start: a run this
    dispatcher never sent (it was sent before a restart, and the task read again)."""
    return (
        phase in (Phase.HELD, Phase.WAITING)
        and event.attempt == job.attempt
        and event.status is ResultStatus.SUCCEEDED
        and job.dedupe_key == job.task_id  # a replay runs again, whatever ran before
    )


def _same_run(lease: Lease, agent_id: str, attempt: int) -> bool:
    return lease.attempt == attempt and lease.agent_id == agent_id


def _why(reason: DeadLetterReason) -> str:
    if reason is DeadLetterReason.NO_CAPABLE_AGENT:
        return "no agent can run this task (skills, zone or target)"
    return "deadline or TTL passed before dispatch"
