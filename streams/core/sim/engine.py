"""The discrete-event loop: a workload and simulated agents driving one :class:`Distributor`.

Theory of operation. Time jumps from event to event (integer ms). Arrivals come from the
pre-generated workload (a cursor, not the heap); everything else is a heap entry
``(time_ms, seq, kind, agent, job, token)``, where ``seq`` breaks ties in insertion order so a
run is deterministic. At equal times, heap events go before arrivals (a slot freed at ``t`` is
free for a task arriving at ``t``). Once the events of an instant are done, before time moves
on, the engine asks the distributor for its next wake-up and plans one ``tick`` there (earlier
plans win; a superseded tick is skipped).

The engine carries out the distributor's actions: a ``Dispatch`` is delivered to the agent (it
starts the task or queues it locally), a ``StopRun`` (preemption: ``streams.core.preemption``)
ends the run at once, its slot freed and its result CANCELLED ``preempted`` reported (in
production the stop takes a round trip through Kafka), a ``Retry`` comes back as a
``TaskArrived`` at its due time, ``PauseIntake`` holds new arrivals in per-priority backlogs
(Kafka's role) that are read again, one level after another, on ``ResumeIntake``. Agents
heartbeat every ``heartbeat_interval_ms`` while up; a crash stops the heartbeats, the
distributor notices.
A run of a poison task (``Arrival.fatal``) ends FAILED; of an agent with a
``failure_probability``, RETRYABLE by a draw fixed by the seed; else SUCCEEDED. Given a
:class:`~streams.core.sim.trace.Trace`, the engine notes every event in it as well.

With more than one dispatcher instance (``dispatcher_shards`` and ``dispatcher_instances``:
``sharding.py``) the engine runs one distributor per instance side by side: each task's events
go to the instance owning its shard, each agent heartbeats to every instance with a share of its
slots (announcing that share as its capacity), and each instance has its own planned tick and
its own intake (paused and resumed alone). One shared set of statistics counts the whole fleet
(``fleet_stats.py``). A dispatch while another instance holds a task of a more urgent level is
a *cross-shard inversion* (between shards of different instances): no instance can see it, so
the engine counts it, from each instance's held tasks per level after each of its calls. With
one instance every step is what it was before shards existed, byte for byte.

With an autoscaler (``Scenario.autoscaled``, one instance only) the engine reads the signal of
``streams.core.scaling`` every ``interval_ms`` from the distributor's agents and statistics, as
the dispatcher does, and starts or drains agents of the scaled group (``_on_scale``).

The run ends when every task has ended (completed or dead-lettered) or at the time limit.
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from streams.core.actions import (
    Action,
    Completed,
    DeadLetter,
    Dispatch,
    PauseIntake,
    Requeued,
    ResultStatus,
    ResumeIntake,
    Retry,
    StopRun,
)
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import (
    Event,
    HeartbeatReceived,
    ResultReported,
    TaskArrived,
    TaskStarted,
    Withdrawn,
)
from streams.core.lifecycle import Phase
from streams.core.model import Job
from streams.core.scaling import Autoscaler, ScalingConfig, pool_name
from streams.core.sim.agents_model import SimAgent, Start, failure_draw
from streams.core.sim.fleet_stats import FleetCapacity, ShardStatistics
from streams.core.sim.result import RunResult, agent_figures
from streams.core.sim.scenario import Scenario
from streams.core.sim.sharding import ShardPlan, Share
from streams.core.sim.spec import AgentGroup, AutoscaleSpec
from streams.core.sim.steady import SteadyWindow
from streams.core.sim.stealing import Steal, plan_steals
from streams.core.sim.tally import Tally
from streams.core.sim.trace import Trace
from streams.core.sim.workload import Arrival
from streams.core.stats import Statistics
from streams.errors import CoreError

_RETRY, _HEARTBEAT, _FINISH, _CRASH, _RECOVER, _TICK, _STEAL, _SCALE, _STOP = range(9)

_Event = tuple[int, int, int, SimAgent | None, Job | None, int]
"""(time_ms, seq, kind, agent, job, token): token is an incarnation, an instance or unused."""


def distributor_config(scenario: Scenario, strategy: str) -> DistributorConfig:
    """The distributor settings of one run: the scenario's, with ``strategy`` seeded."""
    return DistributorConfig(
        scheduler=scenario.scheduler,
        routing=replace(scenario.routing, strategy=strategy, seed=scenario.seed),
        health=scenario.health,
        lease_ms=scenario.lease_ms,
        retry_backoffs_ms=scenario.retry_backoffs_ms,
        preemption=scenario.preemption,
    )


def simulate(
    scenario: Scenario, strategy: str, arrivals: Sequence[Arrival], trace: Trace | None = None
) -> RunResult:
    """Run ``arrivals`` through a distributor using ``strategy``; deterministic. ``trace``:
    also note every event of the run in it."""
    return Engine(scenario, strategy, arrivals, trace).run()


def _agents(groups: Sequence[AgentGroup]) -> list[SimAgent]:
    """One simulated agent per id of each group; ids must be unique, ``count`` per group."""
    agents = []
    for group in groups:
        ids = group.agent_ids()
        if len(ids) != group.count:
            raise CoreError(f"agent group {group.name}: {len(ids)} ids for {group.count} agents")
        agents += [SimAgent(agent_id, group) for agent_id in ids]
    if len({agent.agent_id for agent in agents}) != len(agents):
        raise CoreError(f"agent ids must be unique: {[agent.agent_id for agent in agents]}")
    return agents


@dataclass(slots=True)
class _Instance:
    """One dispatcher instance of a run: its distributor, its planned tick, its intake."""

    index: int
    distributor: Distributor
    backlog: list[deque[Job]]
    """Arrivals held back while its intake is paused, per priority level (Kafka's role)."""
    tick_at: int | None = None
    last_tick_ms: int = -1
    paused: bool = False
    backlog_size: int = 0
    turn: int = 0
    held: int = 0
    """Tasks it held after its last call (sharded runs only)."""
    dirty: bool = False
    """Called in the current instant (it is in ``Engine._dirty``)."""
    depth: list[int] = field(default_factory=list)
    """Held tasks per level after its last call (sharded runs only: cross-instance inversions)."""


class Engine:
    """One run: the scenario's distributors (one per instance), agents, one pass over the work."""

    def __init__(
        self,
        scenario: Scenario,
        strategy: str,
        arrivals: Sequence[Arrival],
        trace: Trace | None = None,
    ) -> None:
        self.scenario = scenario
        self.trace = trace
        self.strategy = strategy
        self.scaling = scenario.autoscale if scenario.autoscaled else None
        self.agents = _agents(_starting_groups(scenario.agents, self.scaling))
        self._by_id = {agent.agent_id: agent for agent in self.agents}
        announced = [(agent.agent_id, agent.capacity + agent.prefetch) for agent in self.agents]
        self.plan = ShardPlan.of(
            announced, scenario.dispatcher_shards, scenario.sharding, scenario.dispatcher_instances
        )
        shares = zip(self.agents, self.plan.shares, strict=True)
        self._shares: dict[str, tuple[Share, ...]] = {a.agent_id: s for a, s in shares}
        self.stats = Statistics(scenario.scheduler.levels)
        self.instances = self._make_instances(distributor_config(scenario, strategy))
        self._sharded = len(self.instances) > 1
        if self._sharded and self.scaling is not None:
            raise CoreError("an autoscaled run has one dispatcher instance")
        self._scaler = None if self.scaling is None else _autoscaler(self.scaling, scenario)
        self._owner = (
            {arrival.job.task_id: self.plan.instance_of(arrival.job) for arrival in arrivals}
            if self._sharded
            else {}
        )
        self._slots = self.plan.totals()
        """Slots each instance sees over the fleet (what it publishes, less its in flight)."""
        self._depth = [0] * scenario.scheduler.levels
        """Held tasks per level summed over the instances (sharded runs only)."""
        self._dirty: list[_Instance] = []
        """Shards called in the current instant: their tick is planned before time moves."""
        self._arrivals = arrivals
        self._next = 0
        self._work = {arrival.job.task_id: arrival.work for arrival in arrivals}
        self._fatal = {arrival.job.task_id for arrival in arrivals if arrival.fatal}
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self._now_ms = 0
        self._events = 0
        self._retry_wait = 0
        self.cross_shard_inversions = 0
        self._arrivals_end_ms = 0
        self._arrivals_slot_ms = (0, 0)
        """(busy, available) slot-ms of the fleet when the last task arrived."""
        self.tally = Tally()
        self._first_started: set[str] = set()
        self._steady = SteadyWindow(scenario.warmup_ms, scenario.scheduler.levels)
        self._queue_ms = array("q")
        """Queue time (ms) of each task's first start, in order of start."""
        self._handlers: tuple[Callable[[SimAgent | None, Job | None, int], None], ...] = (
            self._on_retry,
            self._on_heartbeat,
            self._on_finish,
            self._on_crash,
            self._on_recover,
            self._on_tick,
            self._on_steal,
            self._on_scale,
            self._on_stop,
        )
        self._cut: dict[tuple[str, str, int], int] = {}
        """(agent, task, attempt) -> finish events to skip: of runs stopped before their end
        (the same attempt may run there again, and finish later)."""

    def _make_instances(self, config: DistributorConfig) -> list[_Instance]:
        count = self.plan.instances
        levels = self.scenario.scheduler.levels
        if count == 1:
            return [_Instance(0, Distributor(config, self.stats), _backlog(levels))]
        capacity = FleetCapacity(count)
        return [
            _Instance(
                index,
                Distributor(config, ShardStatistics(self.stats, capacity, index)),
                _backlog(levels),
                depth=[0] * levels,
            )
            for index in range(count)
        ]

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run to the end (every task ended) or the time limit; return the figures."""
        self._start_agents()
        last_ms = self._arrivals[-1].at_ms if self._arrivals else 0
        limit_ms = self.scenario.limit_ms(last_ms)
        total = len(self._arrivals)
        while len(self.tally.ended) < total:
            at_ms = self._next_time()
            if self._dirty and (at_ms is None or at_ms > self._now_ms):
                # Before time moves on: is a tick due first? (asked once per instant and
                # instance, not once per event: at high rates many events share a millisecond)
                self._plan_ticks()
                at_ms = self._next_time()
            if at_ms is None or at_ms > limit_ms:
                break
            if self._steady.slot_ms_at_warmup is None and at_ms >= self._steady.warmup_ms:
                # Nothing changes between two events: the fleet's slot-time at the warm-up's
                # end is what it will be just before this one.
                self._steady.slot_ms_at_warmup = self._slot_ms(self._steady.warmup_ms)
            self._now_ms = at_ms
            self._step()
            self._events += 1
        return self._result()

    def _next_time(self) -> int | None:
        heap_ms = self._heap[0][0] if self._heap else None
        if self._next >= len(self._arrivals):
            return heap_ms
        arrival_ms = self._arrivals[self._next].at_ms
        return arrival_ms if heap_ms is None else min(heap_ms, arrival_ms)

    def _step(self) -> None:
        heap = self._heap
        if heap and (
            self._next >= len(self._arrivals) or heap[0][0] <= self._arrivals[self._next].at_ms
        ):
            _, _, kind, agent, job, token = heapq.heappop(heap)
            self._handlers[kind](agent, job, token)
            return
        arrival = self._arrivals[self._next]
        self._next += 1
        self._arrive(arrival.job)
        if self._next == len(self._arrivals):
            self._arrivals_end_ms = self._now_ms
            self._arrivals_slot_ms = self._slot_ms(self._now_ms)

    def _push(
        self, at_ms: int, kind: int, agent: SimAgent | None, job: Job | None, token: int
    ) -> None:
        heapq.heappush(self._heap, (at_ms, next(self._seq), kind, agent, job, token))

    def _plan_ticks(self) -> None:
        dirty, self._dirty = self._dirty, []
        for instance in dirty:
            instance.dirty = False
            self._plan_tick(instance)

    def _plan_tick(self, instance: _Instance) -> None:
        wake_ms = instance.distributor.next_wakeup_ms(self._now_ms)
        if wake_ms is None:
            return
        if wake_ms <= self._now_ms:
            wake_ms = self._now_ms if instance.last_tick_ms != self._now_ms else self._now_ms + 1
        if instance.tick_at is None or wake_ms < instance.tick_at:
            instance.tick_at = wake_ms
            self._push(wake_ms, _TICK, None, None, instance.index)

    # --- instances -----------------------------------------------------------------------

    def _instance_of(self, job: Job) -> _Instance:
        return self.instances[self._owner[job.task_id]] if self._sharded else self.instances[0]

    def _handle(self, instance: _Instance, events: list[Event]) -> None:
        """One call of an instance's distributor, and its actions carried out."""
        if not instance.dirty:
            instance.dirty = True
            self._dirty.append(instance)
        self._apply(instance, instance.distributor.handle(events, self._now_ms))
        if self._sharded:
            self._note_depth(instance)

    def _note_depth(self, instance: _Instance) -> None:
        """Keep ``_depth`` (held per level over all instances) current after a call of it."""
        core = instance.distributor
        if core.held == instance.held == 0:
            return  # nothing held before or after: most calls, skipped cheaply
        instance.held = core.held
        total = self._depth
        for level, held in core.depth_by_priority().items():
            total[level] += held - instance.depth[level]
            instance.depth[level] = held

    def _cross_shard_inversion(self, instance: _Instance, priority: int) -> bool:
        """Another instance holds a task of a more urgent level than this dispatch's."""
        own = instance.depth
        return any(self._depth[level] > own[level] for level in range(priority))

    # --- events --------------------------------------------------------------------------

    def _start_agents(self) -> None:
        if self.scaling is not None:
            self._push(self.scaling.interval_ms, _SCALE, None, None, 0)
        if self._sharded and self.scenario.steal_ms:
            self._push(self.scenario.steal_ms, _STEAL, None, None, 0)
        for agent in self.agents:
            self._push(0, _HEARTBEAT, agent, None, agent.incarnation)
            group = agent.group
            if group.crash_at_ms is not None:
                self._push(group.crash_at_ms, _CRASH, agent, None, 0)
            if group.recover_at_ms is not None:
                self._push(group.recover_at_ms, _RECOVER, agent, None, 0)

    def _arrive(self, job: Job) -> None:
        instance = self._instance_of(job)
        if instance.paused:
            instance.backlog[job.priority].append(job)
            instance.backlog_size += 1
            return
        self._handle(instance, [TaskArrived(job)])

    def _on_retry(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert job is not None
        self._retry_wait -= 1
        self._handle(self._instance_of(job), [TaskArrived(job)])

    def _on_heartbeat(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert agent is not None
        if not agent.up or token != agent.incarnation:
            return  # the chain of a crashed incarnation ends here
        now_ms = self._now_ms
        heartbeat = agent.heartbeat(now_ms)
        for index, slots in self._shares[agent.agent_id]:
            # Each instance is told its share as the agent's capacity: it fills no more.
            share = heartbeat if slots == heartbeat.capacity else replace(heartbeat, capacity=slots)
            self._handle(self.instances[index], [HeartbeatReceived(share)])
        interval_ms = self.scenario.health.heartbeat_interval_ms
        self._push(now_ms + interval_ms, _HEARTBEAT, agent, None, token)

    def _on_finish(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert agent is not None and job is not None
        run = (agent.agent_id, job.task_id, job.attempt)
        if run in self._cut:  # the end of a run stopped earlier: it never came
            self._cut[run] -= 1
            if not self._cut[run]:
                del self._cut[run]
            return
        live, following = agent.finish(job, token, self._now_ms)
        if not live:
            return
        status, error = self._outcome(agent, job)
        if self.trace is not None:
            self.trace.finished(self._now_ms, agent.agent_id, job, status)
        if following is not None:
            self._started(agent, following)
        reported = ResultReported(job.task_id, agent.agent_id, job.attempt, status, error)
        self._handle(self._instance_of(job), [reported])
        if agent.draining and not agent.running and not agent.waiting:
            self._stop(agent)

    def _on_stop(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        """The agent is told to stop a run (preempted): it ends now, CANCELLED ``preempted``,
        and its slot starts what waits there; one that waits there is dropped from its queue.
        Nothing happens when the run ended first (its result came first) or was lost."""
        assert agent is not None and job is not None
        started_ms = agent.started_ms(job)
        following = None
        if started_ms is not None:
            _, following = agent.finish(job, agent.incarnation, self._now_ms)
            run = (agent.agent_id, job.task_id, job.attempt)
            self._cut[run] = self._cut.get(run, 0) + 1
        elif not agent.unqueue(job):
            return
        self.tally.preempted += 1
        self.tally.preempted_run_ms += 0 if started_ms is None else self._now_ms - started_ms
        if following is not None:
            self._started(agent, following)
        status = ResultStatus.CANCELLED
        stopped = ResultReported(
            job.task_id, agent.agent_id, job.attempt, status, "preempted", preempted=True
        )
        self._handle(self._instance_of(job), [stopped])

    def _outcome(self, agent: SimAgent, job: Job) -> tuple[ResultStatus, str | None]:
        if job.task_id in self._fatal:
            return (ResultStatus.FAILED, "simulated poison task")
        probability = agent.group.failure_probability
        if probability and failure_draw(self.scenario.seed, job.task_id, job.attempt) < probability:
            self.tally.failures += 1
            return (ResultStatus.RETRYABLE, "simulated failure")
        return (ResultStatus.SUCCEEDED, None)

    def _on_crash(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert agent is not None
        agent.crash(self._now_ms)
        if self.trace is not None:
            self.trace.crashed(self._now_ms, agent.agent_id)

    def _on_recover(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert agent is not None
        agent.recover(self._now_ms)
        if self.trace is not None:
            self.trace.recovered(self._now_ms, agent.agent_id)
        self._on_heartbeat(agent, None, agent.incarnation)

    def _on_tick(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        instance = self.instances[token]
        if instance.tick_at != self._now_ms:
            return  # superseded by an earlier plan that already ran
        instance.tick_at = None
        instance.last_tick_ms = self._now_ms
        self._handle(instance, [])

    def _on_scale(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        """The autoscaler reads the signal and starts or drains agents of its group."""
        spec, scaler = self.scaling, self._scaler
        assert spec is not None and scaler is not None
        now_ms = self._now_ms
        self._push(now_ms + spec.interval_ms, _SCALE, None, None, 0)
        core = self.instances[0].distributor
        group = next(g for g in self.scenario.agents if g.name == spec.group)
        signals = scaler.observe(now_ms, core.agents(), self.stats.demand(), self._announced)
        pool = pool_name(group.skills, group.zone)
        signal = signals.get(pool)
        wanted = signal.desired if signal is not None else spec.min_agents
        active = [a for a in self.agents if a.up and not a.draining]
        own = [a for a in active if a.group.name == group.name]
        others = sum(1 for a in active if a.group.name != group.name and _pool(a.group) == pool)
        target = max(spec.min_agents, wanted - others)
        if spec.max_agents is not None:
            target = min(target, spec.max_agents)
        for _ in range(target - len(own)):
            self._boot(group, now_ms + spec.startup_ms)
        for surplus in reversed(own[target:]):  # the newest first
            self._drain(surplus)

    def _boot(self, group: AgentGroup, ready_ms: int) -> None:
        """A new agent of ``group``: paid from now, heartbeating (taking work) from
        ``ready_ms``."""
        agent_id = f"{group.name}-{sum(a.group.name == group.name for a in self.agents) + 1:03d}"
        agent = SimAgent(agent_id, group, started_ms=self._now_ms)
        self.agents.append(agent)
        self._by_id[agent_id] = agent
        self._shares[agent_id] = ((0, agent.capacity + agent.prefetch),)
        self.tally.scaled_up += 1
        self._push(ready_ms, _HEARTBEAT, agent, None, agent.incarnation)

    def _drain(self, agent: SimAgent) -> None:
        """Scale ``agent`` in: it announces DRAINING at once and stops once idle (at once when
        it never took work: it was still starting)."""
        agent.draining = True
        self.tally.scaled_down += 1
        core = self.instances[0].distributor
        if core.heard_at(agent.agent_id) is not None:
            self._handle(self.instances[0], [HeartbeatReceived(agent.heartbeat(self._now_ms))])
        if not agent.running and not agent.waiting:
            self._stop(agent)

    def _stop(self, agent: SimAgent) -> None:
        """A drained agent exits: it says STOPPING (if it was ever heard) and goes down
        without losing anything (nothing runs or waits there)."""
        core = self.instances[0].distributor
        if core.heard_at(agent.agent_id) is not None:
            stopping = replace(agent.heartbeat(self._now_ms), status="STOPPING")
            self._handle(self.instances[0], [HeartbeatReceived(stopping)])
        agent.crash(self._now_ms)  # empty: a clean stop; its heartbeat chain ends here

    def _announced(self, agent_id: str) -> int | None:
        """The slots an agent announces without its prefetch, as a live agent does."""
        agent = self._by_id.get(agent_id)
        return None if agent is None else agent.capacity

    def _on_steal(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        """A round of work stealing between the instances (``stealing.py``)."""
        self._push(self._now_ms + self.scenario.steal_ms, _STEAL, None, None, 0)
        if not any(self._depth):
            return  # nothing held anywhere: nothing to steal
        cores = [instance.distributor for instance in self.instances]
        pairs = zip(self._slots, cores, strict=True)
        free = [max(0, slots - core.in_flight) for slots, core in pairs]
        held = [core.held for core in cores]
        victims: dict[int, list[Job]] = {}
        for steal in plan_steals(free, held):
            if steal.victim not in victims:
                victims[steal.victim] = _held_most_urgent_first(cores[steal.victim])
            self._hand_over(steal, victims[steal.victim])

    def _hand_over(self, steal: Steal, held: list[Job]) -> None:
        """The victim withdraws its ``count`` most urgent held tasks; the thief takes them."""
        victim, thief = self.instances[steal.victim], self.instances[steal.thief]
        taken = held[: steal.count]
        del held[: steal.count]  # the victim's list, shared by the steals of this round
        # Only what is still held: an earlier call of this round may have placed some.
        core = victim.distributor
        jobs = [job for job in taken if core.phase_of(job.task_id) is Phase.HELD]
        if not jobs:
            return
        for job in jobs:
            self._owner[job.task_id] = steal.thief
        self.tally.stolen += len(jobs)
        self._handle(victim, [Withdrawn(tuple(job.task_id for job in jobs))])
        self._handle(thief, [TaskArrived(job) for job in jobs])

    # --- actions -------------------------------------------------------------------------

    def _apply(self, instance: _Instance, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Dispatch():
                    self._deliver(instance, action)
                case Completed():
                    self._completed(action)
                case DeadLetter():
                    self._dead_lettered(action)
                case Retry():
                    self.tally.retried += 1
                    self._retry_wait += 1
                    self._push(action.due_ms, _RETRY, None, action.job, 0)
                case Requeued():
                    self.tally.requeued += 1
                case StopRun():
                    agent = self._by_id[action.agent_id]
                    self._push(self._now_ms, _STOP, agent, action.job, 0)
                case PauseIntake():
                    instance.paused = True
                    self.tally.intake_pauses += 1
                case ResumeIntake():
                    instance.paused = False
                    self._drain_backlog(instance)

    def _deliver(self, instance: _Instance, dispatch: Dispatch) -> None:
        agent = self._by_id[dispatch.agent_id]
        job = dispatch.job
        if self.trace is not None:
            self.trace.dispatched(dispatch.dispatched_ms, agent.agent_id, job)
        if self._sharded and self._cross_shard_inversion(instance, job.priority):
            self.cross_shard_inversions += 1
        if not agent.up:
            self.tally.lost_deliveries += 1
            return
        if agent.running >= agent.capacity:
            self.tally.locally_queued += 1
            if instance.distributor.late_binding(job) and agent.waiting >= agent.prefetch:
                self.tally.overbooked += 1
        start = agent.deliver(job, self._work[job.task_id], self._now_ms)
        if start is not None:
            self._started(agent, start)

    def _started(self, agent: SimAgent, start: Start) -> None:
        job = start.job
        self._push(start.finish_ms, _FINISH, agent, job, start.incarnation)
        if self.trace is not None:
            self.trace.started(start.started_ms, agent.agent_id, job)
        if job.task_id not in self._first_started:
            self._first_started.add(job.task_id)
            queue_ms = start.started_ms - job.submitted_ms
            self._queue_ms.append(queue_ms)
            self._steady.started(job.priority, job.submitted_ms, queue_ms)
        started = TaskStarted(job.task_id, agent.agent_id, job.attempt, start.started_ms)
        self._handle(self._instance_of(job), [started])

    def _completed(self, completed: Completed) -> None:
        if not self.tally.end(completed.job.task_id, self._now_ms):
            return
        if completed.status is ResultStatus.SUCCEEDED:
            self.tally.completed += 1
        else:
            self.tally.cancelled += 1

    def _dead_lettered(self, letter: DeadLetter) -> None:
        if not self.tally.end(letter.job.task_id, self._now_ms):
            return
        self.tally.dead_lettered[letter.reason.value] += 1
        if self.trace is not None:
            self.trace.dead_lettered(self._now_ms, letter)

    def _drain_backlog(self, instance: _Instance) -> None:
        """Read the held-back arrivals, one priority level after another, until paused again."""
        backlog = instance.backlog
        levels = len(backlog)
        while instance.backlog_size and not instance.paused:
            queue = backlog[instance.turn]
            instance.turn = (instance.turn + 1) % levels
            if queue:
                instance.backlog_size -= 1
                self._handle(instance, [TaskArrived(queue.popleft())])

    def _slot_ms(self, now_ms: int) -> tuple[int, int]:
        busy = sum(agent.busy_at(now_ms) for agent in self.agents)
        return (busy, sum(agent.available_ms(now_ms) for agent in self.agents))

    # --- the end -------------------------------------------------------------------------

    def _result(self) -> RunResult:
        now_ms = self._now_ms
        cores = [instance.distributor for instance in self.instances]
        done = len(self.tally.ended) == len(self._arrivals)
        return RunResult(
            strategy=self.strategy,
            summary=self.stats.summary(now_ms),
            end_ms=now_ms,
            makespan_ms=self.tally.last_end_ms if done else now_ms,
            finished=done,
            events=self._events,
            tasks=len(self._arrivals),
            tally=self.tally,
            unfinished={
                "queued": sum(core.held for core in cores),
                "in_flight": sum(core.in_flight for core in cores),
                "retry_wait": self._retry_wait,
                "backlog": sum(instance.backlog_size for instance in self.instances),
                "not_arrived": len(self._arrivals) - self._next,
            },
            agents=agent_figures(self.agents, now_ms),
            queue_ms=self._queue_ms,
            shards=self.plan.shards,
            instances=self.plan.instances,
            sharding=self.plan.sharding,
            steal_ms=self.scenario.steal_ms if self._sharded else 0,
            cross_shard_inversions=self.cross_shard_inversions,
            arrivals_end_ms=self._arrivals_end_ms,
            arrivals_slot_ms=self._arrivals_slot_ms,
            steady=self._steady.figures(self._arrivals_slot_ms),
            autoscaled=self.scaling is not None,
        )


def _starting_groups(
    groups: Sequence[AgentGroup], scaling: AutoscaleSpec | None
) -> list[AgentGroup]:
    """The groups as they start: the autoscaled one with its ``initial`` agents."""
    if scaling is None:
        return list(groups)
    return [
        replace(group, count=scaling.initial) if group.name == scaling.group else group
        for group in groups
        if group.name != scaling.group or scaling.initial > 0
    ]


def _autoscaler(spec: AutoscaleSpec, scenario: Scenario) -> Autoscaler:
    config = ScalingConfig(
        headroom=spec.headroom,
        drain_s=spec.drain_s,
        window_ms=spec.window_ms,
        cooldown_ms=spec.cooldown_ms,
        default_run_ms=1000 * scenario.mean_work,
    )
    return Autoscaler(config, zone_strict=scenario.routing.zone_strict)


def _pool(group: AgentGroup) -> str:
    return pool_name(group.skills, group.zone)


def _held_most_urgent_first(core: Distributor) -> list[Job]:
    """The tasks ``core`` holds, by level, then submission, then id."""
    held = [job for job in core.jobs() if core.phase_of(job.task_id) is Phase.HELD]
    return sorted(held, key=lambda job: (job.priority, job.submitted_ms, job.task_id))


def _backlog(levels: int) -> list[deque[Job]]:
    return [deque() for _ in range(levels)]
