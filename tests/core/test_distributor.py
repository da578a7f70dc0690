"""The distributor as a whole: random event orders, checked against a ledger of every task.

A hypothesis state machine plays a driver: agents heartbeat (or fall silent), tasks arrive,
agents report results of what they were dispatched, time passes, retries come back when due.
Every decision is checked: a task ends exactly once, none is lost or duplicated, none is
dispatched after its last start time, no agent is ever over capacity, and with strict priority
no agent gets a lower-priority task while a higher one it could run waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
from streams.core.agents import HealthConfig, Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.model import REPLAY_HEADER, Job
from streams.core.routing import RoutingConfig
from streams.core.scheduling import SchedulerConfig

AGENTS = {"a": (2, frozenset({"gpu"})), "b": (1, frozenset()), "c": (3, frozenset({"gpu", "io"}))}
SKILLS = st.sampled_from([frozenset(), frozenset({"gpu"}), frozenset({"io"}), frozenset({"x"})])


@dataclass
class Ledger:
    """Where the driver believes each task is."""

    running: dict[str, tuple[str, int]] = field(default_factory=dict)  # task -> (agent, attempt)
    retries: list[Retry] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    arrived: set[str] = field(default_factory=set)


class DistributorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = DistributorConfig(
            scheduler=SchedulerConfig(
                aging_ms=None, escalation_ms=0, max_held=8, no_capable_agent_timeout_ms=5_000
            ),
            routing=RoutingConfig(strategy="least-connections"),
            health=HealthConfig(
                heartbeat_interval_ms=100, suspect_after_ms=300, down_after_ms=1_000
            ),
            lease_ms=2_000,
            retry_backoffs_ms=(50, 200),
        )
        self.core = Distributor(config)
        self.now_ms = 0
        self.ledger = Ledger()
        self.alive = set(AGENTS)
        self.count = 0
        self.jobs: dict[str, Job] = {}

    # --- the driver's moves ------------------------------------------------------------------

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def heartbeat(self, agent: str) -> None:
        if agent not in self.alive:
            return
        capacity, skills = AGENTS[agent]
        beat = Heartbeat(agent, capacity, skills, None, 1.0, 0.0, "READY", self.now_ms)
        self._apply(self.core.heartbeat(beat, self.now_ms))

    @rule(
        priority=st.integers(0, 3),
        skills=SKILLS,
        deadline_in_ms=st.none() | st.integers(0, 3_000),
        manual=st.none() | st.sampled_from(sorted(AGENTS)),
    )
    def arrive(
        self, priority: int, skills: frozenset[str], deadline_in_ms: int | None, manual: str | None
    ) -> None:
        self.count += 1
        task_id = f"t{self.count}"
        deadline = None if deadline_in_ms is None else self.now_ms + deadline_in_ms
        job = Job(task_id, priority, self.now_ms, required_skills=skills, deadline_ms=deadline,
                  target_agent=manual, max_attempts=3)  # fmt: skip
        self.jobs[task_id] = job
        self.ledger.arrived.add(task_id)
        self._apply(self.core.task_arrived(job, self.now_ms))

    @rule(data=st.data())
    def duplicate_delivery(self, data: st.DataObject) -> None:
        if self.jobs:
            task_id = data.draw(st.sampled_from(sorted(self.jobs)))
            job = self.jobs[task_id]
            assert self.core.is_duplicate(job), "a second delivery must be recognised"
            assert self.core.task_arrived(job, self.now_ms) == []

    @precondition(lambda self: bool(self.ledger.running))
    @rule(data=st.data(), status=st.sampled_from(list(ResultStatus)))
    def finish(self, data: st.DataObject, status: ResultStatus) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.ledger.running)))
        agent, attempt = self.ledger.running.pop(task_id)
        self.core.task_started(task_id, agent, attempt, self.now_ms)
        self._apply(self.core.result(task_id, agent, attempt, status, self.now_ms, "boom"))

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def crash(self, agent: str) -> None:
        self.alive.discard(agent)
        for task_id, (holder, _) in list(self.ledger.running.items()):
            if holder == agent:
                del self.ledger.running[task_id]  # its results never come

    @rule(agent=st.sampled_from(sorted(AGENTS)))
    def recover(self, agent: str) -> None:
        self.alive.add(agent)

    @rule(step_ms=st.integers(1, 700))
    def advance(self, step_ms: int) -> None:
        self.now_ms += step_ms
        due = [r for r in self.ledger.retries if r.due_ms <= self.now_ms]
        self.ledger.retries = [r for r in self.ledger.retries if r.due_ms > self.now_ms]
        for retry in due:
            self._apply(self.core.task_arrived(retry.job, self.now_ms))
        self._apply(self.core.tick(self.now_ms))

    # --- checking each decision --------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Dispatch):
                self._check_dispatch(action)
            elif isinstance(action, Retry):
                assert action.job.task_id not in self.ledger.ended
                assert action.due_ms > self.now_ms
                self.ledger.retries.append(action)
            elif isinstance(action, DeadLetter | Completed):
                task_id = action.job.task_id
                assert task_id not in self.ledger.ended, f"{task_id} ended twice"
                self.ledger.ended[task_id] = type(action).__name__
                self.ledger.running.pop(task_id, None)
            elif isinstance(action, Requeued):
                self.ledger.running.pop(action.job.task_id, None)
            else:
                assert isinstance(action, PauseIntake | ResumeIntake)

    def _check_dispatch(self, action: Dispatch) -> None:
        job = action.job
        assert job.task_id not in self.ledger.ended, f"{job.task_id} dispatched after it ended"
        last_start = job.last_start_ms()
        assert last_start is None or self.now_ms <= last_start, "dispatched after its deadline"
        agent = self.core.registry.get(action.agent_id)
        assert agent is not None and agent.can_run(job)
        assert agent.in_flight <= agent.capacity, "agent over capacity"
        inversion = self.core.scheduler.has_waiting(job.priority, agent.can_run)
        assert not inversion, "a better task this agent could run was waiting"
        if action.agent_id in self.alive:
            self.ledger.running[job.task_id] = (action.agent_id, job.attempt)

    @invariant()
    def every_task_is_somewhere_exactly_once(self) -> None:
        held = self.core.held
        in_flight = len(self.core.in_flight)
        waiting_retry = {r.job.task_id for r in self.ledger.retries}
        assert len(waiting_retry) == len(self.ledger.retries)
        accounted = held + in_flight + len(waiting_retry) + len(self.ledger.ended)
        assert accounted == len(self.ledger.arrived)

    @invariant()
    def no_agent_over_capacity(self) -> None:
        for agent in self.core.registry.agents:
            assert agent.in_flight <= agent.capacity


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
        for index in range(6):
            beat = Heartbeat(f"a{index}", 2, frozenset(), None, 1.0, 0.0, "READY", 0)
            core.heartbeat(beat, 0)
        for index in range(40):
            actions = core.task_arrived(Job(f"t{index}", index % 4, index), index)
            out += [f"{a.job.task_id}->{a.agent_id}" for a in actions if isinstance(a, Dispatch)]
        return out

    assert run() == run()
    assert len(run()) == 12  # six agents, two slots each: late binding holds the rest


def test_a_replayed_dead_letter_runs_again_once() -> None:
    core = Distributor(DistributorConfig())
    core.heartbeat(Heartbeat("a", 1, frozenset(), None, 1.0, 0.0, "READY", 0), 0)
    job = Job("t", 0, 0, max_attempts=1)
    (dispatch,) = core.task_arrived(job, 1)
    assert isinstance(dispatch, Dispatch)
    (dead,) = core.result("t", "a", 0, ResultStatus.FAILED, 2)
    assert isinstance(dead, DeadLetter)
    assert core.is_duplicate(job) and core.task_arrived(job, 3) == []
    replayed = replace(job, headers=((REPLAY_HEADER, "1"),))
    assert not core.is_duplicate(replayed)
    assert [type(a) for a in core.task_arrived(replayed, 4)] == [Dispatch]
    assert core.is_duplicate(replayed)  # a second delivery of the same replay is dropped


def test_restored_ended_tasks_are_duplicates() -> None:
    core = Distributor(DistributorConfig())
    core.restore_ended(Job("t", 0, 0).dedupe_key)
    assert core.is_duplicate(Job("t", 0, 0)) and core.task_arrived(Job("t", 0, 0), 0) == []
    assert not core.is_duplicate(Job("t", 0, 0, headers=((REPLAY_HEADER, "2"),)))
