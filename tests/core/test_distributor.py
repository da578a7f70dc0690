"""The distributor as a whole: random event orders, checked against a ledger of every task.

A hypothesis state machine plays a driver: agents heartbeat (or fall silent, or restart as a new
incarnation), tasks arrive (also twice), agents report results of what they were dispatched,
time passes, retries come back (sometimes before they are due), and the driver itself restarts
from what a durable store would hold. Every decision is checked: a task ends exactly once, none
is lost or duplicated, none is dispatched after its last start time, no agent is ever over
capacity, and with strict priority no agent gets a lower-priority task while a higher one it
could run waits. Preemption is on (p0 and p1 may stop runs of less urgent levels): a run is
stopped for it only on an agent the waiting task could use, the victim goes back with the same
attempt, is preempted at most once (across the driver's restarts too: the count travels with the
task into the store), and the slot it frees goes to the task it was stopped for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
from streams.core.agents import HealthConfig, HealthEvent, Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
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
from streams.core.lifecycle import TRANSITIONS, Lifecycle, Phase, Step
from streams.core.model import ORDERING_KEY_HEADER, REPLAY_HEADER, AgentState, Job
from streams.core.preemption import PreemptionConfig
from streams.core.routing import RoutingConfig
from streams.core.scheduling import SchedulerConfig
from streams.errors import CoreError

AGENTS = {"a": (2, frozenset({"gpu"})), "b": (1, frozenset()), "c": (3, frozenset({"gpu", "io"}))}
KEYS = ["k1", "k2"]
"""Ordering keys (``ORDERING_KEY_HEADER``) some tasks carry."""
SKILLS = st.sampled_from([frozenset(), frozenset({"gpu"}), frozenset({"io"}), frozenset({"x"})])
LEASE_MS = 2_000
CONFIG = DistributorConfig(
    scheduler=SchedulerConfig(
        aging_ms=None, escalation_ms=0, max_held=8, no_capable_agent_timeout_ms=5_000
    ),
    routing=RoutingConfig(strategy="least-connections"),
    health=HealthConfig(heartbeat_interval_ms=100, suspect_after_ms=300, down_after_ms=1_000),
    lease_ms=LEASE_MS,
    retry_backoffs_ms=(50, 200),
    preemption=PreemptionConfig(after_ms={0: 0, 1: 200}, victims=frozenset({1, 2, 3})),
)


@dataclass
class Ledger:
    """Where the driver believes each task is."""

    running: dict[str, Dispatch] = field(default_factory=dict)
    retries: list[Retry] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    arrived: set[str] = field(default_factory=set)
    jobs: dict[str, Job] = field(default_factory=dict)
    """Each task as the driver last wrote it (arrival, dispatch, requeue, retry)."""
    dispatched: dict[str, Dispatch] = field(default_factory=dict)
    """The last dispatch of each task not ended: what a durable store keeps of it."""
    early: dict[str, int] = field(default_factory=dict)
    """Retries handed to the core before they were due, with their due time."""
    finished_runs: set[tuple[str, str, int]] = field(default_factory=set)
    """(task, agent, attempt) of every run that ended: a result of one of them is stale."""


class DistributorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = Distributor(CONFIG)
        self.now_ms = 0
        self.ledger = Ledger()
        self.alive = set(AGENTS)
        self.incarnation = dict.fromkeys(AGENTS, 1)
        self.count = 0
        self.finished: set[str] = set()
        self.stopped: set[str] = set()
        """Tasks told to stop (cancelled while at an agent): they may only end CANCELLED or
        SUCCEEDED, never run again."""
        self.preempting: dict[str, str] = {}
        """Runs told to stop for preemption (not ended yet) -> the agent they run on."""
        self.preempting_for: dict[str, str] = {}
        """Runs told to stop for preemption -> the urgent task they were stopped for."""
        self.told_to_yield: set[str] = set()
        """Tasks whose run at an agent was told to stop for preemption: the agent says so in
        its result (``ResultReported.preempted``), whether the driver restarted or not."""
        self.times_preempted: dict[str, int] = {}
        """How often each task was preempted since the driver (re)started."""

    # --- the driver's moves ------------------------------------------------------------------

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def heartbeat(self, agent: str) -> None:
        if agent in self.alive:
            self._handle(HeartbeatReceived(self._beat(agent)))

    @rule(
        priority=st.integers(0, 3),
        skills=SKILLS,
        deadline_in_ms=st.none() | st.integers(0, 3_000),
        manual=st.none() | st.sampled_from(sorted(AGENTS)),
        key=st.none() | st.sampled_from(KEYS),
    )
    def arrive(
        self,
        priority: int,
        skills: frozenset[str],
        deadline_in_ms: int | None,
        manual: str | None,
        key: str | None,
    ) -> None:
        self.count += 1
        task_id = f"t{self.count}"
        deadline = None if deadline_in_ms is None else self.now_ms + deadline_in_ms
        headers = () if key is None else ((ORDERING_KEY_HEADER, key),)
        job = Job(task_id, priority, self.now_ms, required_skills=skills, deadline_ms=deadline,
                  target_agent=manual, max_attempts=3, headers=headers)  # fmt: skip
        self.ledger.jobs[task_id] = job
        self.ledger.arrived.add(task_id)
        self._handle(TaskArrived(job))

    @rule(priority=st.integers(0, 3), count=st.integers(1, 6))
    def burst(self, priority: int, count: int) -> None:
        """Plain tasks of one level at once: enough to fill the fleet, so that a more urgent
        one finds no free slot and preempts."""
        for _ in range(count):
            self.arrive(priority, frozenset(), None, None, None)

    @rule(data=st.data())
    def duplicate_delivery(self, data: st.DataObject) -> None:
        if self.ledger.arrived:
            task_id = data.draw(st.sampled_from(sorted(self.ledger.arrived)))
            job = replace(self.ledger.jobs[task_id], attempt=0)
            if any(r.job.task_id == task_id for r in self.ledger.retries):
                return  # an older delivery while its retry travels: checked in `retry_early`
            assert self.core.is_duplicate(job), "a second delivery must be recognised"
            # dropped first; what comes due at this instant may act after it (a task found
            # without a capable agent in the last pass expires now), checked as any action
            assert self._handle(TaskArrived(job))[0] == Dropped(job)

    @precondition(lambda self: bool(self.ledger.running))
    @rule(data=st.data(), status=st.sampled_from(list(ResultStatus)))
    def finish(self, data: st.DataObject, status: ResultStatus) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.ledger.running)))
        run = self.ledger.running.pop(task_id)
        job = run.job
        started = TaskStarted(task_id, run.agent_id, job.attempt, self.now_ms)
        preempted = task_id in self.told_to_yield and status is ResultStatus.CANCELLED
        self.told_to_yield.discard(task_id)
        if not preempted:  # it ended before the stop came: its result stands
            self.preempting.pop(task_id, None)
        result = ResultReported(
            task_id, run.agent_id, job.attempt, status, "boom", preempted=preempted
        )
        held = {t for t in self.ledger.arrived if self.core.phase_of(t) is Phase.HELD}
        actions = self._handle(started, result)
        assert actions[:1] == [Finished(job, run.agent_id, status)]
        if task_id in self.preempting_for:
            self._check_hand_over(self.preempting_for.pop(task_id), run, held, actions)

    @precondition(lambda self: bool(self.ledger.finished_runs))
    @rule(data=st.data())
    def stale_result(self, data: st.DataObject) -> None:
        """A result of a run that was taken back (its task runs elsewhere): ignored."""
        task_id, agent_id, attempt = data.draw(st.sampled_from(sorted(self.ledger.finished_runs)))
        lease = self.core.lease_of(task_id)
        if lease is not None and (lease.agent_id, lease.attempt) == (agent_id, attempt):
            return
        if task_id not in self.ledger.ended and self.ledger.jobs[task_id].attempt == attempt:
            return  # preempted, it runs that attempt again: a success of it may end it
        actions = self._handle(ResultReported(task_id, agent_id, attempt, ResultStatus.SUCCEEDED))
        assert not any(isinstance(a, Finished) for a in actions)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """A cancel of a task anywhere, or of the next one before it arrives."""
        upcoming = f"t{self.count + 1}"
        task_id = data.draw(st.sampled_from([*sorted(self.ledger.arrived), upcoming]))
        waiting = (  # held, behind its key, or waiting out a retry's backoff
            task_id in self.ledger.arrived
            and task_id not in self.ledger.ended
            and task_id not in self.ledger.dispatched
            and self.core.phase_of(task_id) is not None  # else remembered till it comes
        )
        running_here = self.core.phase_of(task_id) is Phase.IN_FLIGHT
        actions = self._handle(CancelRequested(task_id))
        if waiting:  # ended at once
            assert any(isinstance(a, Cancelled) and a.job.task_id == task_id for a in actions)
        if task_id in self.ledger.dispatched and task_id not in self.ledger.ended:
            if running_here and task_id not in self.stopped:  # recovering: once heard from
                assert any(isinstance(a, StopRun) and a.job.task_id == task_id for a in actions)
            self.stopped.add(task_id)

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def crash(self, agent: str) -> None:
        self.alive.discard(agent)
        self._lose_runs_of(agent)

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def recover(self, agent: str) -> None:
        self.alive.add(agent)

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def restart_agent(self, agent: str) -> None:
        """The agent restarts at once as a new incarnation: what it ran is lost."""
        self.incarnation[agent] += 1
        self.alive.add(agent)
        self._lose_runs_of(agent)
        self._handle(HeartbeatReceived(self._beat(agent)))

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def leave(self, agent: str) -> None:
        self.alive.discard(agent)
        self._lose_runs_of(agent)
        self._handle(AgentLeft(agent))

    @rule(step_ms=st.integers(1, 700))
    def advance(self, step_ms: int) -> None:
        self.now_ms += step_ms
        due = [r for r in self.ledger.retries if r.due_ms <= self.now_ms]
        self.ledger.retries = [r for r in self.ledger.retries if r.due_ms > self.now_ms]
        self._handle(*(TaskArrived(retry.job) for retry in due))

    @precondition(lambda self: bool(self.ledger.retries))
    @rule(data=st.data())
    def retry_early(self, data: st.DataObject) -> None:
        """A retry read before it is due waits in the core; an older delivery is dropped."""
        retry = data.draw(st.sampled_from(self.ledger.retries))
        self.ledger.retries.remove(retry)
        older = replace(retry.job, attempt=retry.job.attempt - 1)
        if self.core.phase_of(retry.job.task_id) is Phase.RETRYING:  # not since a restart
            assert self.core.is_duplicate(older)
        self.ledger.early[retry.job.task_id] = retry.due_ms
        self._handle(TaskArrived(retry.job, due_ms=retry.due_ms))
        assert self.core.phase_of(retry.job.task_id) in (Phase.WAITING, None)

    @rule()
    def restart(self) -> None:
        """The driver restarts: a new core, fed what a durable store holds (the ended keys, the
        last dispatch of each task in flight or requeued, the retry of a key's head) before the
        inputs, read again in the order they arrived."""
        self.core = Distributor(CONFIG)
        self.stopped.clear()  # a stop is not durable (docs/results.md, Cancelling)
        self.preempting.clear()  # nor a preemption (the agent's result says it, though)
        self.preempting_for.clear()
        self.times_preempted.clear()
        events: list[Event] = [
            EndedRecovered(self.ledger.jobs[task_id].dedupe_key) for task_id in self.ledger.ended
        ]
        stored = [r for r in self.ledger.retries if r.job.ordering_key is not None]
        for retry in stored:  # the store holds it: it comes back first, not from its tier
            self.ledger.retries.remove(retry)
            self.ledger.early[retry.job.task_id] = retry.due_ms
        waiting_retry = {r.job.task_id for r in self.ledger.retries}
        inputs: list[Event] = []
        open_tasks = self.ledger.arrived - self.ledger.ended.keys() - waiting_retry
        for task_id in sorted(open_tasks, key=_arrival):
            job = self.ledger.jobs[task_id]
            run = self.ledger.dispatched.get(task_id)
            if run is not None and run.job.attempt == job.attempt:
                recovered = InFlightRecovered(
                    job, run.agent_id, run.epoch, run.dispatched_ms, run.lease_ms
                )
                events.append(recovered)
            elif job.attempt > 0:  # requeued or retried: from the store
                events.append(TaskArrived(job, due_ms=self.ledger.early.get(task_id)))
            else:
                inputs.append(TaskArrived(job, due_ms=self.ledger.early.get(task_id)))
        self._handle(*events, *inputs)

    # --- checking each decision --------------------------------------------------------------

    def _beat(self, agent: str) -> Heartbeat:
        capacity, skills = AGENTS[agent]
        incarnation = self.incarnation[agent]
        return Heartbeat(agent, capacity, skills, None, 1.0, 0.0, "READY", self.now_ms, incarnation)

    def _lose_runs_of(self, agent: str) -> None:
        for task_id, run in list(self.ledger.running.items()):
            if run.agent_id == agent:
                del self.ledger.running[task_id]  # its results never come
                self.told_to_yield.discard(task_id)

    def _handle(self, *events: Event) -> list[Action]:
        actions = self.core.handle(list(events), self.now_ms)
        for action in actions:
            self._check(action)
        return actions

    def _check(self, action: Action) -> None:
        if isinstance(action, Dispatch):
            self._check_dispatch(action)
        elif isinstance(action, Retry):
            assert action.job.task_id not in self.ledger.ended
            assert action.due_ms > self.now_ms
            self._note(action.job)
            self.ledger.retries.append(action)
        elif isinstance(action, Cancelled):
            task_id = action.job.task_id
            assert task_id not in self.ledger.ended, f"{task_id} ended twice"
            assert task_id not in self.ledger.dispatched, "a running task is stopped, not dropped"
            self.ledger.ended[task_id] = "Cancelled"
            # its retry on its way back, if any, will be dropped as a duplicate: none to track
            self.ledger.retries = [r for r in self.ledger.retries if r.job.task_id != task_id]
        elif isinstance(action, StopRun):
            run = self.ledger.dispatched.get(action.job.task_id)
            assert run is not None and run.agent_id == action.agent_id
            if action.preempted:
                self._check_preemption(action)
        elif isinstance(action, DeadLetter | Completed):
            task_id = action.job.task_id
            if task_id in self.stopped:
                stopped_ok = isinstance(action, Completed) and action.status in (
                    ResultStatus.CANCELLED,
                    ResultStatus.SUCCEEDED,
                )
                assert stopped_ok, f"{task_id}, told to stop, ended {action}"
            assert task_id not in self.ledger.ended, f"{task_id} ended twice"
            self.ledger.ended[task_id] = type(action).__name__
            self.ledger.running.pop(task_id, None)
            self.ledger.dispatched.pop(task_id, None)
            self.preempting.pop(task_id, None)
            self.told_to_yield.discard(task_id)
        elif isinstance(action, Requeued):
            self._check_requeued(action)
        elif isinstance(action, Finished):
            key = (action.job.task_id, action.agent_id, action.job.attempt)
            self.ledger.finished_runs.add(key)
        else:
            assert isinstance(action, Dropped | PauseIntake | ResumeIntake)

    def _check_requeued(self, action: Requeued) -> None:
        task_id = action.job.task_id
        preempted = action.cause.startswith("preempted")
        if task_id in self.preempting or preempted:  # stopped for an urgent task: no attempt
            self.preempting.pop(task_id, None)  # spent, whether it stopped or was lost
            self.told_to_yield.discard(task_id)
            before = self.ledger.jobs[task_id]
            assert action.job.attempt == before.attempt
            assert action.job.preempted == before.preempted + 1, "a preemption is counted"
            bound = CONFIG.preemption.max_per_task  # the count survives the driver's restarts
            assert action.job.preempted <= bound, f"{task_id} preempted past its bound"
            self.ledger.jobs[task_id] = action.job
            self.ledger.dispatched.pop(task_id, None)
        else:
            assert action.job.preempted == self.ledger.jobs[task_id].preempted
            self._note(action.job)
        run = self.ledger.running.pop(task_id, None)
        if run is not None:
            self.ledger.finished_runs.add((run.job.task_id, run.agent_id, run.job.attempt))

    def _check_hand_over(
        self, urgent: str, run: Dispatch, held: set[str], actions: list[Action]
    ) -> None:
        """The slot a preempted run frees goes to the task it was stopped for, if that one
        still waits and the agent still takes work."""
        agent = next(a for a in self.core.agents() if a.agent_id == run.agent_id)
        ended = {a.job.task_id for a in actions if isinstance(a, DeadLetter | Cancelled)}
        if urgent in held and urgent not in ended and agent.state is AgentState.READY:
            placed = [
                a.agent_id for a in actions if isinstance(a, Dispatch) and a.job.task_id == urgent
            ]
            assert placed == [run.agent_id], f"{urgent} did not get the slot freed for it"
            event("a slot freed by preemption handed over")

    def _check_preemption(self, stop: StopRun) -> None:
        """A run is stopped for an overdue p0 or p1 task held, that could run on its agent,
        of a more urgent level; at most once per task, and not while it stops already."""
        victim = stop.job
        assert victim.task_id not in self.preempting, "stopped twice for preemption"
        assert victim.priority in CONFIG.preemption.victims
        assert victim.preempted < CONFIG.preemption.max_per_task, "its count, kept, is spent"
        count = self.times_preempted.get(victim.task_id, 0) + 1
        assert count <= CONFIG.preemption.max_per_task, f"{victim.task_id} preempted again"
        self.times_preempted[victim.task_id] = count
        agent = next(a for a in self.core.agents() if a.agent_id == stop.agent_id)
        bounds = CONFIG.preemption.after_ms
        urgent = [
            job
            for task_id, job in self.ledger.jobs.items()
            if self.core.phase_of(task_id) is Phase.HELD
            and job.priority in bounds
            and job.priority < victim.priority
            and self.now_ms - job.submitted_ms >= bounds[job.priority]
            and agent.can_run(job)
        ]
        assert urgent, f"{victim.task_id} stopped for no overdue task that could use its slot"
        assert agent.free_slots == 0, "a run was stopped on an agent with a free slot"
        self.preempting[victim.task_id] = stop.agent_id
        if victim.task_id in self.ledger.running:  # else its agent is gone: no result comes
            self.told_to_yield.add(victim.task_id)
        event("a run preempted")
        self.preempting_for[victim.task_id] = self.core.preempting_for(victim.task_id) or ""

    def _check_key_order(self, job: Job) -> None:
        """A task of an ordering key is dispatched only once every earlier task of its key has
        ended, and while no other task of its key is at an agent."""
        same_key = [t for t, j in self.ledger.jobs.items() if j.ordering_key == job.ordering_key]
        earlier = [t for t in same_key if _arrival(t) < _arrival(job.task_id)]
        assert all(t in self.ledger.ended for t in earlier), f"{job.task_id} overtook its key"
        at_agents = [t for t in same_key if t in self.ledger.dispatched and t != job.task_id]
        assert not at_agents, f"{job.task_id} dispatched beside {at_agents} of its key"

    def _note(self, job: Job) -> None:
        assert job.attempt > self.ledger.jobs[job.task_id].attempt, "an attempt is counted"
        self.ledger.jobs[job.task_id] = job
        self.ledger.dispatched.pop(job.task_id, None)

    def _check_dispatch(self, action: Dispatch) -> None:
        job = action.job
        assert job.task_id not in self.stopped, f"{job.task_id}, told to stop, runs again"
        assert job.task_id not in self.ledger.ended, f"{job.task_id} dispatched after it ended"
        if job.ordering_key is not None:
            self._check_key_order(job)
        last_start = job.last_start_ms()
        assert last_start is None or self.now_ms <= last_start, "dispatched after its deadline"
        agent = next(a for a in self.core.agents() if a.agent_id == action.agent_id)
        assert agent.state is AgentState.READY and agent.can_run(job)
        assert agent.in_flight <= agent.capacity, "agent over capacity"
        assert action.epoch == self.incarnation[action.agent_id]
        self.ledger.jobs[job.task_id] = job
        self.ledger.dispatched[job.task_id] = action
        self.ledger.early.pop(job.task_id, None)
        if action.agent_id in self.alive:
            self.ledger.running[job.task_id] = action

    @invariant()
    def every_task_is_somewhere_exactly_once(self) -> None:
        core, ledger = self.core, self.ledger
        with_driver = {r.job.task_id for r in ledger.retries}
        assert len(with_driver) == len(ledger.retries)
        live = sum(core.count(phase) for phase in Phase if phase is not Phase.RETRYING)
        assert live + len(with_driver) + len(ledger.ended) == len(ledger.arrived)
        assert core.held == core.count(Phase.HELD)
        assert core.in_flight == core.count(Phase.IN_FLIGHT)
        for task_id in ledger.ended:
            assert core.phase_of(task_id) is None
        for task_id in with_driver:
            assert core.phase_of(task_id) in (Phase.RETRYING, None)  # None: since a restart

    @invariant()
    def no_wake_up_in_the_past(self) -> None:
        """A driver sleeps until ``next_wakeup_ms``: one before now would make it spin (an
        overdue task with nothing to preempt, say). Now itself is allowed: a timeout decided
        at the next release (no capable agent) may answer it once."""
        wakeup = self.core.next_wakeup_ms(self.now_ms)
        assert wakeup is None or wakeup >= self.now_ms or not self.core.connected

    @invariant()
    def no_agent_over_capacity(self) -> None:
        for agent in self.core.agents():
            assert agent.in_flight <= agent.capacity


def _arrival(task_id: str) -> int:
    """The order in which the machine's tasks arrived (``t1``, ``t2``, ...)."""
    return int(task_id[1:])


DistributorMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestDistributor = DistributorMachine.TestCase


def test_same_events_same_decisions() -> None:
    def run() -> list[str]:
        core = Distributor(
            DistributorConfig(routing=RoutingConfig(strategy="power-of-two-choices"))
        )
        out: list[str] = []
        beats = [
            HeartbeatReceived(Heartbeat(f"a{index}", 2, frozenset(), None, 1.0, 0.0, "READY", 0))
            for index in range(6)
        ]
        core.handle(beats, 0)
        for index in range(40):
            actions = core.handle([TaskArrived(Job(f"t{index}", index % 4, index))], index)
            out += [f"{a.job.task_id}->{a.agent_id}" for a in actions if isinstance(a, Dispatch)]
        return out

    assert run() == run()
    assert len(run()) == 12  # six agents, two slots each: late binding holds the rest


def test_a_batch_of_events_decides_as_one_at_a_time_does() -> None:
    """Handing the events of one moment at once gives the same dispatches as one by one."""
    jobs = [Job(f"t{index}", index % 4, 0, tenant=f"x{index % 3}") for index in range(30)]
    beats = [
        HeartbeatReceived(Heartbeat(f"a{index}", 3, frozenset(), None, 1.0, 0.0, "READY", 0))
        for index in range(4)
    ]

    def dispatched(batched: bool) -> list[tuple[str, str]]:
        core = Distributor(DistributorConfig(routing=RoutingConfig(strategy="least-connections")))
        events: list[Event] = [*(TaskArrived(job) for job in jobs), *beats]
        if batched:
            actions = core.handle(events, 5)
        else:
            actions = [a for event in events for a in core.handle([event], 5)]
        return sorted((a.job.task_id, a.agent_id) for a in actions if isinstance(a, Dispatch))

    one_at_a_time = dispatched(batched=False)
    assert len(one_at_a_time) == 12
    assert {task_id for task_id, _ in dispatched(batched=True)} == {
        task_id for task_id, _ in one_at_a_time
    }


def test_a_replayed_dead_letter_runs_again_once() -> None:
    core = Distributor(DistributorConfig())
    core.handle([HeartbeatReceived(Heartbeat("a", 1, frozenset(), None, 1.0, 0.0, "READY", 0))], 0)
    job = Job("t", 0, 0, max_attempts=1)
    (dispatch,) = core.handle([TaskArrived(job)], 1)
    assert isinstance(dispatch, Dispatch)
    finished, dead = core.handle([ResultReported("t", "a", 0, ResultStatus.FAILED)], 2)
    assert isinstance(finished, Finished) and isinstance(dead, DeadLetter)
    assert core.is_duplicate(job) and core.handle([TaskArrived(job)], 3) == [Dropped(job)]
    replayed = replace(job, headers=((REPLAY_HEADER, "1"),))
    assert not core.is_duplicate(replayed)
    assert [type(a) for a in core.handle([TaskArrived(replayed)], 4)] == [Dispatch]
    assert core.is_duplicate(replayed)  # a second delivery of the same replay is dropped


def test_recovered_ended_tasks_are_duplicates() -> None:
    core = Distributor(DistributorConfig())
    job = Job("t", 0, 0)
    core.handle([EndedRecovered(job.dedupe_key)], 0)
    assert core.is_duplicate(job) and core.handle([TaskArrived(job)], 0) == [Dropped(job)]
    assert not core.is_duplicate(Job("t", 0, 0, headers=((REPLAY_HEADER, "2"),)))


def _beat(agent: str, capacity: int, sent_ms: int, incarnation: int = 1) -> HeartbeatReceived:
    hb = Heartbeat(agent, capacity, frozenset(), None, 1.0, 0.0, "READY", sent_ms, incarnation)
    return HeartbeatReceived(hb)


def test_a_recovered_lease_holds_its_slot_once_its_agent_is_back() -> None:
    core = Distributor(CONFIG)
    job = Job("t", 0, 0)
    core.handle([InFlightRecovered(job, "a", 7, 0, LEASE_MS)], 10)
    assert core.phase_of("t") is Phase.RECOVERING
    assert core.handle([TaskArrived(job)], 11) == [Dropped(job)]  # read again: known
    other = Job("u", 0, 0)
    actions = core.handle([_beat("a", 1, 20, incarnation=7), TaskArrived(other)], 20)
    assert core.phase_of("t") is Phase.IN_FLIGHT
    assert actions == [] and core.phase_of("u") is Phase.HELD  # the one slot is taken
    finished, completed, dispatch = core.handle(
        [ResultReported("t", "a", 0, ResultStatus.SUCCEEDED)], 30
    )
    assert isinstance(completed, Completed) and isinstance(dispatch, Dispatch)
    assert (finished.status, dispatch.job.task_id, dispatch.epoch) == (
        ResultStatus.SUCCEEDED,
        "u",
        7,
    )


def test_a_recovered_lease_goes_back_to_the_queue_when_its_agent_restarted_or_stays_silent() -> (
    None
):
    core = Distributor(CONFIG)
    first, second = Job("t1", 0, 0), Job("t2", 0, 0)
    core.handle(
        [InFlightRecovered(first, "a", 7, 0, LEASE_MS), InFlightRecovered(second, "b", 3, 0, 9)],
        10,
    )
    requeued, dispatch = core.handle([_beat("a", 1, 20, incarnation=8)], 20)
    assert isinstance(requeued, Requeued) and requeued.job.attempt == 1
    assert isinstance(dispatch, Dispatch) and dispatch.epoch == 8  # again, to the new run
    down_after_ms = CONFIG.health.down_after_ms
    assert core.next_wakeup_ms(21) <= 10 + down_after_ms
    (again,) = [a for a in core.handle([], 10 + down_after_ms) if isinstance(a, Requeued)]
    assert again.job.task_id == "t2" and "did not come back" in again.cause


def test_a_result_read_back_with_a_recovered_lease_settles_it_though_its_agent_restarted() -> None:
    """A recovery reads the results written since the last commit with the leases: a task the
    old run finished ends with its result, not in a second run on the new incarnation."""
    core = Distributor(CONFIG)
    core.handle([_beat("a", 2, 0, incarnation=8)], 0)  # the agent restarted meanwhile
    finished, lost = Job("t1", 0, 0), Job("t2", 0, 0)
    actions = core.handle(
        [
            InFlightRecovered(finished, "a", 7, 0, LEASE_MS),
            InFlightRecovered(lost, "a", 7, 0, LEASE_MS),
            ResultReported("t1", "a", 0, ResultStatus.SUCCEEDED),
        ],
        10,
    )
    assert [type(action) for action in actions if not isinstance(action, Dispatch)] == [
        Finished,
        Completed,
        Requeued,
    ]
    (requeued,) = [action for action in actions if isinstance(action, Requeued)]
    assert requeued.job.task_id == "t2" and requeued.job.attempt == 1
    assert core.phase_of("t1") is None


def test_a_task_read_again_ends_with_the_success_of_its_run_before_a_restart() -> None:
    """No agent has a free slot, so the task is held: a success of the same attempt (its run
    before the restart) ends it; another attempt's, or a failure, is not its run."""
    core = Distributor(CONFIG)
    core.handle([TaskArrived(Job("t", 0, 0)), TaskArrived(Job("u", 0, 0))], 0)
    assert core.held == 2
    ignored = [
        ResultReported("t", "a", 1, ResultStatus.SUCCEEDED),  # not the attempt it waits for
        ResultReported("t", "a", 0, ResultStatus.FAILED),  # it may run again: not a result
    ]
    assert core.handle(ignored, 1) == [] and core.held == 2
    actions = core.handle([ResultReported("t", "a", 0, ResultStatus.SUCCEEDED)], 2)
    assert [type(action) for action in actions] == [Finished, Completed]
    assert core.phase_of("t") is None and core.is_duplicate(Job("t", 0, 0))
    assert core.held == 1 and core.phase_of("u") is Phase.HELD


def test_a_replayed_task_runs_again_whatever_ran_before() -> None:
    """A dead letter replayed keeps its id and starts at attempt 0 again: an old success of
    that id and attempt is not its run."""
    core = Distributor(CONFIG)
    replay = Job("t", 0, 0, headers=((REPLAY_HEADER, "1"),))
    core.handle([TaskArrived(replay)], 0)
    assert core.handle([ResultReported("t", "a", 0, ResultStatus.SUCCEEDED)], 1) == []
    assert core.phase_of("t") is Phase.HELD


def test_tasks_handed_to_another_driver_leave_this_ones_statistics() -> None:
    """A shard moved away: its waiting task's deadline, and its running task's slot, are the
    other instance's from then on, not misses or busy slots here."""
    core = Distributor(CONFIG)
    core.handle([_beat("a", 1, 0, incarnation=1)], 0)
    running, waiting = Job("r", 0, 0), Job("w", 0, 0, deadline_ms=50)
    core.handle([TaskArrived(running), TaskArrived(waiting)], 1)  # one slot: "w" waits
    assert core.stats.summary(100).deadline_missed == 1  # overdue while it waits here
    core.handle([Withdrawn(("r", "w"))], 100)
    later = core.stats.summary(1_000)
    assert later.deadline_missed == 0
    assert core.stats.summary(2_000).utilization < later.utilization  # the slot is free


def test_a_new_incarnation_of_a_live_agent_loses_what_the_old_one_held() -> None:
    core = Distributor(CONFIG)
    core.handle([_beat("a", 2, 0, incarnation=1)], 0)
    (dispatch,) = core.handle([TaskArrived(Job("t", 0, 0))], 1)
    assert isinstance(dispatch, Dispatch) and dispatch.epoch == 1
    requeued, redispatch = core.handle([_beat("a", 2, 5, incarnation=2)], 5)
    assert isinstance(requeued, Requeued) and isinstance(redispatch, Dispatch)
    assert (redispatch.job.attempt, redispatch.epoch) == (1, 2)
    late = core.handle([_beat("a", 2, 3, incarnation=1)], 6)  # an older heartbeat: ignored
    assert late == [] and core.lease_of("t") is not None


def test_the_observer_is_told_each_transition_with_its_cause_before_the_tasks_go_back() -> None:
    seen: list[tuple[AgentState | None, AgentState, HealthEvent | None, int, int]] = []
    core = Distributor(
        CONFIG,
        on_transition=lambda t, agent: seen.append(
            (t.before, t.after, t.cause, t.incarnation, agent.in_flight)
        ),
    )
    core.handle([_beat("a", 2, 0, incarnation=1), TaskArrived(Job("t", 0, 0))], 0)
    core.handle([_beat("a", 2, 5, incarnation=2)], 5)  # a restart: the old run held "t"
    core.handle([], 5 + CONFIG.health.down_after_ms + 1)  # silent: suspect, then down
    ready, restart = HealthEvent.HEARTBEAT_READY, HealthEvent.LEAVE
    assert seen == [
        (None, AgentState.JOINING, ready, 1, 0),
        (AgentState.JOINING, AgentState.READY, ready, 1, 0),
        (AgentState.READY, AgentState.DOWN, restart, 1, 1),
        (AgentState.DOWN, AgentState.JOINING, ready, 2, 0),
        (AgentState.JOINING, AgentState.READY, ready, 2, 0),
        (AgentState.READY, AgentState.DOWN, HealthEvent.SILENT_DOWN, 2, 1),
    ]


def test_the_lifecycle_table_refuses_steps_it_does_not_list() -> None:
    table = Lifecycle()
    job = Job("t", 0, 0)
    assert table.move("t", job, Step.ARRIVE) is not None
    for step in Step:
        if (Phase.HELD, step) not in TRANSITIONS:
            try:
                table.move("t", job, step)
            except CoreError as error:
                assert "not allowed when HELD" in str(error)
            else:
                raise AssertionError(f"{step} from HELD was allowed")
    assert table.move("t", job, Step.END) is None and len(table) == 0


@settings(max_examples=60, deadline=None)
@given(
    outage_starts=st.integers(0, 900),
    outage_ms=st.integers(0, 30_000),
    ticks=st.lists(st.integers(0, 40_000), max_size=30),
)
def test_an_outage_of_the_dispatchers_own_link_takes_nothing_from_the_agents(
    outage_starts: int, outage_ms: int, ticks: list[int]
) -> None:
    """Agents last heard at 0, a task running on each; the dispatcher loses the broker before
    anyone is DOWN (down after 1 s) and hears it again ``outage_ms`` later. Nothing is taken
    back until 1 s of silence *after* the link is back, then everything is once an agent is
    heard (the others are really silent); tasks submitted meanwhile still wait for a slot."""
    core = Distributor(CONFIG)
    core.handle([_beat("a", 1, 0), _beat("b", 1, 0)], 0)
    core.handle([TaskArrived(Job("t1", 0, 0)), TaskArrived(Job("t2", 0, 0))], 0)
    back_ms = outage_starts + outage_ms
    grace_end = back_ms + CONFIG.health.down_after_ms
    core.set_connected(False, outage_starts)
    taken_back: list[int] = []
    for now in sorted({*ticks, back_ms}):
        if now < outage_starts:
            continue
        if now >= back_ms and not core.connected:
            core.set_connected(True, back_ms)
        actions = core.handle([], now)
        taken_back += [now for action in actions if isinstance(action, Requeued)]
        wakeup = core.next_wakeup_ms(now)
        assert core.connected or wakeup is None or wakeup > now  # no busy wake-ups
    assert all(now > grace_end for now in taken_back)
    if not core.connected:
        core.set_connected(True, back_ms)
    # Both agents silent is the whole fleet's silence (agents.py, invariant 10): nothing moves
    # until an agent is heard. Agent a beats again; b stays silent, its task goes elsewhere,
    # and a's runs past its lease.
    late = grace_end + LEASE_MS + 1
    later = late + CONFIG.health.down_after_ms + LEASE_MS + 1
    requeued = [
        action
        for now in range(late, later + 1, CONFIG.health.heartbeat_interval_ms)
        for action in core.handle([_beat("a", 1, now)], now)
        if isinstance(action, Requeued) and action.job.attempt == 1  # not a's later runs
    ]
    assert len(taken_back) + len(requeued) == 2  # each of the two, once


def test_the_whole_fleet_silent_at_once_keeps_its_tasks_and_a_lone_agent_does_not() -> None:
    """Two agents both silent past down_after_ms (a network fault between them and the broker,
    most likely): their tasks stay theirs, and once one is heard again the other's silence
    counts from then. A lone agent's silence is its failure: its task goes back at once."""
    health = CONFIG.health
    config = replace(CONFIG, lease_ms=1_000_000)  # no lease runs out: silence alone decides
    core = Distributor(config)
    core.handle([_beat("a", 1, 0), _beat("b", 1, 0)], 0)
    first = core.handle([TaskArrived(Job("t1", 0, 0)), TaskArrived(Job("t2", 0, 0))], 10)
    assert sorted(a.agent_id for a in first if isinstance(a, Dispatch)) == ["a", "b"]
    quiet = core.handle([], 10 * health.down_after_ms)
    assert not any(isinstance(a, Requeued) for a in quiet)
    assert {agent.state for agent in core.agents()} == {AgentState.SUSPECT}
    back_ms = 10 * health.down_after_ms + 1
    core.handle([_beat("a", 1, back_ms)], back_ms)  # a is heard: b is judged from now
    assert not any(isinstance(a, Requeued) for a in core.handle([], back_ms + 500))
    later = back_ms + health.down_after_ms + 1
    lost = core.handle([_beat("a", 1, later)], later)
    assert [(a.job.task_id, a.agent_id) for a in lost if isinstance(a, Requeued)] == [("t2", "b")]

    leased = Distributor(CONFIG)  # leases of 2 s: they wait for the fleet too
    leased.handle([_beat("a", 1, 0), _beat("b", 1, 0)], 0)
    leased.handle([TaskArrived(Job("t1", 0, 0)), TaskArrived(Job("t2", 0, 0))], 10)
    assert not any(isinstance(a, Requeued) for a in leased.handle([], 100_000))
    heard = leased.handle([_beat("a", 1, 100_001), _beat("b", 1, 100_001)], 100_001)
    assert not any(isinstance(a, Requeued) for a in heard)
    assert leased.lease_of("t1") is not None and leased.lease_of("t2") is not None

    alone = Distributor(config)
    alone.handle([_beat("a", 1, 0)], 0)
    alone.handle([TaskArrived(Job("t1", 0, 0))], 10)
    gone = alone.handle([], health.down_after_ms + 20)
    assert [a.job.task_id for a in gone if isinstance(a, Requeued)] == ["t1"]


def test_while_the_fleet_is_silent_nothing_is_due_until_a_heartbeat() -> None:
    core = Distributor(CONFIG)  # leases of 2 s, down after 1 s
    core.handle([_beat("a", 1, 0), _beat("b", 1, 0)], 0)
    core.handle([TaskArrived(Job("t1", 0, 0))], 10)
    core.handle([], 50_000)  # far past the lease: the fleet is silent
    assert core.next_wakeup_ms(50_000) is None  # no busy loop: only a heartbeat changes things


def test_a_run_cancelled_before_its_agent_is_heard_again_is_stopped_once_it_is() -> None:
    core = Distributor(CONFIG)
    job = Job("t", 0, 0)
    core.handle([InFlightRecovered(job, "a", 1, 0, LEASE_MS)], 0)  # after a restart
    assert not any(isinstance(a, StopRun) for a in core.handle([CancelRequested("t")], 1))
    heard = core.handle([_beat("a", 1, 2)], 2)  # the same incarnation: it still runs it
    assert [(a.job.task_id, a.agent_id) for a in heard if isinstance(a, StopRun)] == [("t", "a")]
    ended = core.handle([ResultReported("t", "a", 0, ResultStatus.CANCELLED)], 3)
    assert [a.status for a in ended if isinstance(a, Completed)] == [ResultStatus.CANCELLED]
