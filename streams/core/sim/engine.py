"""The discrete-event loop: a workload and simulated agents driving one :class:`Distributor`.

Theory of operation. Time jumps from event to event (integer ms). Arrivals come from the
pre-generated workload (a cursor, not the heap); everything else is a heap entry
``(time_ms, seq, kind, agent, job, token)``, where ``seq`` breaks ties in insertion order so a
run is deterministic. At equal times, heap events go before arrivals (a slot freed at ``t`` is
free for a task arriving at ``t``). Once the events of an instant are done, before time moves
on, the engine asks the distributor for its next wake-up and plans one ``tick`` there (earlier
plans win; a superseded tick is skipped).

The engine carries out the distributor's actions: a ``Dispatch`` is delivered to the agent (it
starts the task or queues it locally), a ``Retry`` comes back as a ``TaskArrived`` at its
due time, ``PauseIntake`` holds new arrivals in per-priority backlogs (Kafka's role) that are
read again, one level after another, on ``ResumeIntake``. Agents heartbeat every
``heartbeat_interval_ms`` while up; a crash stops the heartbeats, the distributor notices.
A run of a poison task (``Arrival.fatal``) ends FAILED; of an agent with a
``failure_probability``, RETRYABLE by a draw fixed by the seed; else SUCCEEDED. Given a
:class:`~streams.core.sim.trace.Trace`, the engine notes every event in it as well.

The run ends when every task has ended (completed or dead-lettered) or at the time limit.
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

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
)
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import HeartbeatReceived, ResultReported, TaskArrived, TaskStarted
from streams.core.model import Job
from streams.core.sim.agents_model import SimAgent, Start, failure_draw
from streams.core.sim.result import RunResult, agent_figures
from streams.core.sim.scenario import Scenario
from streams.core.sim.spec import AgentGroup
from streams.core.sim.tally import Tally
from streams.core.sim.trace import Trace
from streams.core.sim.workload import Arrival
from streams.errors import CoreError

_RETRY, _HEARTBEAT, _FINISH, _CRASH, _RECOVER, _TICK = range(6)

_Event = tuple[int, int, int, SimAgent | None, Job | None, int]
"""(time_ms, seq, kind, agent, job, token): token is an incarnation or unused."""


def distributor_config(scenario: Scenario, strategy: str) -> DistributorConfig:
    """The distributor settings of one run: the scenario's, with ``strategy`` seeded."""
    return DistributorConfig(
        scheduler=scenario.scheduler,
        routing=replace(scenario.routing, strategy=strategy, seed=scenario.seed),
        health=scenario.health,
        lease_ms=scenario.lease_ms,
        retry_backoffs_ms=scenario.retry_backoffs_ms,
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


class Engine:
    """One run: one distributor, the scenario's agents, one pass over the workload."""

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
        self.distributor = Distributor(distributor_config(scenario, strategy))
        self.agents = _agents(scenario.agents)
        self._by_id = {agent.agent_id: agent for agent in self.agents}
        self._arrivals = arrivals
        self._next = 0
        self._work = {arrival.job.task_id: arrival.work for arrival in arrivals}
        self._fatal = {arrival.job.task_id for arrival in arrivals if arrival.fatal}
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self._now_ms = 0
        self._tick_at: int | None = None
        self._last_tick_ms = -1
        self._events = 0
        self._retry_wait = 0
        self._paused = False
        self._backlog: list[deque[Job]] = [deque() for _ in range(scenario.scheduler.levels)]
        self._backlog_size = 0
        self._turn = 0
        self.tally = Tally()
        self._first_started: set[str] = set()
        self._queue_ms = array("q")
        """Queue time (ms) of each task's first start, in order of start."""
        self._handlers: tuple[Callable[[SimAgent | None, Job | None, int], None], ...] = (
            self._on_retry,
            self._on_heartbeat,
            self._on_finish,
            self._on_crash,
            self._on_recover,
            self._on_tick,
        )

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run to the end (every task ended) or the time limit; return the figures."""
        self._start_agents()
        last_ms = self._arrivals[-1].at_ms if self._arrivals else 0
        limit_ms = self.scenario.limit_ms(last_ms)
        total = len(self._arrivals)
        changed = False
        while len(self.tally.ended) < total:
            at_ms = self._next_time()
            if changed and (at_ms is None or at_ms > self._now_ms):
                # Before time moves on: is a tick due first? (asked once per instant, not
                # once per event: at high rates many events share a millisecond)
                changed = False
                self._plan_tick()
                at_ms = self._next_time()
            if at_ms is None or at_ms > limit_ms:
                break
            self._now_ms = at_ms
            self._step()
            self._events += 1
            changed = True
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

    def _push(
        self, at_ms: int, kind: int, agent: SimAgent | None, job: Job | None, token: int
    ) -> None:
        heapq.heappush(self._heap, (at_ms, next(self._seq), kind, agent, job, token))

    def _plan_tick(self) -> None:
        wake_ms = self.distributor.next_wakeup_ms(self._now_ms)
        if wake_ms is None:
            return
        if wake_ms <= self._now_ms:
            wake_ms = self._now_ms if self._last_tick_ms != self._now_ms else self._now_ms + 1
        if self._tick_at is None or wake_ms < self._tick_at:
            self._tick_at = wake_ms
            self._push(wake_ms, _TICK, None, None, 0)

    # --- events --------------------------------------------------------------------------

    def _start_agents(self) -> None:
        for agent in self.agents:
            self._push(0, _HEARTBEAT, agent, None, agent.incarnation)
            group = agent.group
            if group.crash_at_ms is not None:
                self._push(group.crash_at_ms, _CRASH, agent, None, 0)
            if group.recover_at_ms is not None:
                self._push(group.recover_at_ms, _RECOVER, agent, None, 0)

    def _arrive(self, job: Job) -> None:
        if self._paused:
            self._backlog[job.priority].append(job)
            self._backlog_size += 1
            return
        self._apply(self.distributor.handle([TaskArrived(job)], self._now_ms))

    def _on_retry(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert job is not None
        self._retry_wait -= 1
        self._apply(self.distributor.handle([TaskArrived(job)], self._now_ms))

    def _on_heartbeat(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert agent is not None
        if not agent.up or token != agent.incarnation:
            return  # the chain of a crashed incarnation ends here
        now_ms = self._now_ms
        self._apply(self.distributor.handle([HeartbeatReceived(agent.heartbeat(now_ms))], now_ms))
        interval_ms = self.scenario.health.heartbeat_interval_ms
        self._push(now_ms + interval_ms, _HEARTBEAT, agent, None, token)

    def _on_finish(self, agent: SimAgent | None, job: Job | None, token: int) -> None:
        assert agent is not None and job is not None
        live, following = agent.finish(job, token, self._now_ms)
        if not live:
            return
        status, error = self._outcome(agent, job)
        if self.trace is not None:
            self.trace.finished(self._now_ms, agent.agent_id, job, status)
        if following is not None:
            self._started(agent, following)
        reported = ResultReported(job.task_id, agent.agent_id, job.attempt, status, error)
        self._apply(self.distributor.handle([reported], self._now_ms))

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
        if self._tick_at != self._now_ms:
            return  # superseded by an earlier plan that already ran
        self._tick_at = None
        self._last_tick_ms = self._now_ms
        self._apply(self.distributor.tick(self._now_ms))

    # --- actions -------------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Dispatch():
                    self._deliver(action)
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
                case PauseIntake():
                    self._paused = True
                    self.tally.intake_pauses += 1
                case ResumeIntake():
                    self._paused = False
                    self._drain_backlog()

    def _deliver(self, dispatch: Dispatch) -> None:
        agent = self._by_id[dispatch.agent_id]
        job = dispatch.job
        if self.trace is not None:
            self.trace.dispatched(dispatch.dispatched_ms, agent.agent_id, job)
        if not agent.up:
            self.tally.lost_deliveries += 1
            return
        if agent.running >= agent.capacity:
            self.tally.locally_queued += 1
            if self.distributor.late_binding(job) and agent.waiting >= agent.prefetch:
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
            self._queue_ms.append(start.started_ms - job.submitted_ms)
        started = TaskStarted(job.task_id, agent.agent_id, job.attempt, start.started_ms)
        self._apply(self.distributor.handle([started], self._now_ms))

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

    def _drain_backlog(self) -> None:
        """Read the held-back arrivals, one priority level after another, until paused again."""
        levels = len(self._backlog)
        while self._backlog_size and not self._paused:
            queue = self._backlog[self._turn]
            self._turn = (self._turn + 1) % levels
            if queue:
                self._backlog_size -= 1
                arrived = TaskArrived(queue.popleft())
                self._apply(self.distributor.handle([arrived], self._now_ms))

    # --- the end -------------------------------------------------------------------------

    def _result(self) -> RunResult:
        now_ms = self._now_ms
        distributor = self.distributor
        done = len(self.tally.ended) == len(self._arrivals)
        return RunResult(
            strategy=self.strategy,
            summary=distributor.stats.summary(now_ms),
            end_ms=now_ms,
            makespan_ms=self.tally.last_end_ms if done else now_ms,
            finished=done,
            events=self._events,
            tasks=len(self._arrivals),
            tally=self.tally,
            unfinished={
                "queued": distributor.held,
                "in_flight": distributor.in_flight,
                "retry_wait": self._retry_wait,
                "backlog": self._backlog_size,
                "not_arrived": len(self._arrivals) - self._next,
            },
            agents=agent_figures(self.agents, now_ms),
            queue_ms=self._queue_ms,
        )
