"""The scheduler against a model, under any sequence of offers, releases, ends, cancels,
expiries, agents joining and leaving, and time passing (hypothesis stateful testing).

The model is what a user of the scheduler can see: the tasks it offered and was told are held,
the fleet of agents (a truthful placer), and the clock. After every step the scheduler must
agree with it; at every release and removal, the documented guarantees must hold.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from streams.core.model import DeadLetterReason, Job
from streams.core.scheduling import (
    NEVER,
    OfferResult,
    Released,
    Scheduler,
    SchedulerConfig,
    effective_priority,
)
from streams.errors import CoreError
from tests.core.test_scheduler_fakes import Answer, Fleet, agent, class_of, job, order_key

TENANTS = ("a", "b", "c")
SKILLS = ("gpu", "arm")
AGENT_IDS = ("n0", "n1", "n2", "n3")


@st.composite
def configs(draw: st.DrawFn) -> SchedulerConfig:
    strict = draw(st.booleans())
    quotas = draw(st.booleans())
    max_held = draw(st.integers(1, 20))
    tenant_limits = st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 3))
    tenant_rates = st.dictionaries(st.sampled_from(TENANTS), st.floats(1.0, 40.0))
    return SchedulerConfig(
        levels=draw(st.integers(1, 4)),
        aging_ms=None if strict else draw(st.one_of(st.none(), st.integers(20, 400))),
        escalation_ms=0 if strict else draw(st.sampled_from([0, 30, 150])),
        max_held=max_held,
        resume_at=draw(st.one_of(st.none(), st.integers(0, max_held - 1))),
        tenant_weights=draw(
            st.dictionaries(st.sampled_from(TENANTS), st.sampled_from([0.5, 1.0, 3.0]))
        ),
        tenant_max_in_flight=draw(tenant_limits) if quotas else {},
        tenant_max_rate_per_s=draw(tenant_rates) if quotas else {},
        reserved_top_share=draw(st.sampled_from([0.0, 0.0, 0.25, 0.5])),
        no_capable_agent_timeout_ms=draw(st.sampled_from([None, 0, 100, 600])),
    )


agent_skills = st.frozensets(st.sampled_from(SKILLS))
deadline_offsets = st.one_of(st.none(), st.integers(0, 800))


@dataclass(frozen=True)
class Tracked:
    """A task the scheduler said it holds, as the model knows it."""

    job: Job
    seq: int
    offered_ms: int

    @property
    def key(self) -> tuple[float, int, int]:
        return order_key(self.job, self.seq)

    def queue(self) -> tuple[int, str, object]:
        return (self.job.priority, self.job.tenant, class_of(self.job))


class SchedulerMachine(RuleBasedStateMachine):
    """Drives a Scheduler and checks it against the model after every step."""

    @initialize(config=configs(), fleet=st.lists(agent_skills, max_size=3))
    def start(self, config: SchedulerConfig, fleet: list[frozenset[str]]) -> None:
        self.config = config
        self.scheduler = Scheduler(config)
        self.fleet = Fleet(agent(AGENT_IDS[i], 2, skills) for i, skills in enumerate(fleet))
        self.now_ms = 0
        self.timed_ms = 0  # now_ms of the last release or expire: tasks past it are parked
        self.held: dict[str, Tracked] = {}
        self.running: list[tuple[Job, str]] = []
        self.release_times: dict[str, list[int]] = {tenant: [] for tenant in TENANTS}
        self.paused = False
        self.seq = 0

    # --- rules -------------------------------------------------------------------------------

    @rule(
        index=st.integers(0, 29),
        level=st.integers(0, 3),
        tenant=st.sampled_from(TENANTS),
        skills=agent_skills,
        manual=st.one_of(st.none(), st.none(), st.sampled_from(AGENT_IDS)),
        age_ms=st.integers(-50, 300),  # negative: the submitter's clock runs ahead
        deadline=deadline_offsets,
        ttl=deadline_offsets,
    )
    def offer(
        self,
        index: int,
        level: int,
        tenant: str,
        skills: frozenset[str],
        manual: str | None,
        age_ms: int,
        deadline: int | None,
        ttl: int | None,
    ) -> None:
        now_ms = self.now_ms
        self._offer(
            Job(
                task_id=f"t{index}",
                priority=level % self.config.levels,
                submitted_ms=now_ms - age_ms,
                tenant=tenant,
                required_skills=skills,
                target_agent=manual,
                deadline_ms=None if deadline is None else now_ms + deadline,
                expires_ms=None if ttl is None else now_ms + ttl,
            )
        )

    @rule(elapsed_ms=st.integers(0, 300))
    def tick(self, elapsed_ms: int) -> None:
        self.now_ms += elapsed_ms

    @rule(limit=st.one_of(st.none(), st.integers(0, 4)))
    def release(self, limit: int | None) -> None:
        self._release(limit)

    @rule(pick=st.integers(0, 50), requeue=st.booleans())
    def finish(self, pick: int, requeue: bool) -> None:
        if not self.running:
            return
        job, agent_id = self.running.pop(pick % len(self.running))
        self.fleet.finish(agent_id)
        self._ended(job, requeue)

    @rule(index=st.integers(0, 29))
    def cancel(self, index: int) -> None:
        task_id = f"t{index}"
        tracked = self.held.get(task_id)
        expected = None if tracked is None or self._parked(tracked) else tracked.job
        assert self.scheduler.remove(task_id) == expected
        if expected is not None:
            del self.held[task_id]
            self._drained()

    @rule()
    def expire(self) -> None:
        self._expire()

    @rule(skills=agent_skills, capacity=st.integers(0, 3))
    def agent_joins(self, skills: frozenset[str], capacity: int) -> None:
        free_ids = [agent_id for agent_id in AGENT_IDS if agent_id not in self.fleet.agents]
        if free_ids:
            joining = agent(free_ids[0], capacity, skills)
            self.fleet.agents[joining.agent_id] = joining

    @rule(pick=st.integers(0, 3))
    def agent_leaves(self, pick: int) -> None:
        """Its running tasks fail over: counted finished, offered again with one more attempt."""
        if not self.fleet.agents:
            return
        leaving = sorted(self.fleet.agents)[pick % len(self.fleet.agents)]
        del self.fleet.agents[leaving]
        lost = [task for task, agent_id in self.running if agent_id == leaving]
        self.running = [(task, owner) for task, owner in self.running if owner != leaving]
        for task in lost:
            self._ended(task, requeue=True)

    @rule()
    def sleep_until_wakeup(self) -> None:
        """Release and expire everything due now: nothing may change before next_wakeup_ms."""
        self._release(None)
        self._expire()
        wakeup_ms = self.scheduler.next_wakeup_ms(self.now_ms)
        assert wakeup_ms is None or wakeup_ms > self.now_ms  # no spinning on the spot
        probe_ms = self.now_ms + 5_000 if wakeup_ms is None else wakeup_ms - 1
        scheduler, fleet = self._copies()
        assert scheduler.release(probe_ms, fleet) == []
        assert scheduler.expire(probe_ms) == []
        if wakeup_ms is not None:
            self.now_ms = wakeup_ms

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def holds_exactly_what_it_was_given(self) -> None:
        waiting = [tracked for tracked in self.held.values() if not self._parked(tracked)]
        assert self.scheduler.held == len(waiting)
        depth = dict.fromkeys(range(self.config.levels), 0)
        for tracked in waiting:
            depth[tracked.job.priority] += 1
        assert self.scheduler.depth_by_priority() == depth

    @invariant()
    def pauses_with_hysteresis(self) -> None:
        assert self.scheduler.paused == self.paused

    @invariant()
    def counts_tenants_in_flight(self) -> None:
        for tenant, limit in self.config.tenant_max_in_flight.items():
            in_flight = sum(1 for job, _ in self.running if job.tenant == tenant)
            assert self.scheduler.in_flight(tenant) == in_flight <= limit

    # --- steps shared by rules ---------------------------------------------------------------

    def _offer(self, job: Job) -> None:
        last_start_ms = job.last_start_ms()
        if job.task_id in self.held:
            expected = OfferResult.DUPLICATE
        elif last_start_ms is not None and last_start_ms < self.now_ms:
            expected = OfferResult.EXPIRED
        else:
            expected = OfferResult.HELD
        assert self.scheduler.offer(job, self.now_ms) is expected
        if expected is OfferResult.HELD:
            self.seq += 1
            self.held[job.task_id] = Tracked(job, self.seq, self.now_ms)
            self.paused = self.paused or self.scheduler.held >= self.config.max_held

    def _ended(self, job: Job, requeue: bool) -> None:
        self.scheduler.task_finished(job)
        if requeue:
            self._offer(replace(job, attempt=job.attempt + 1))

    def _release(self, limit: int | None) -> None:
        self.fleet.now_ms = self.now_ms
        log_start = len(self.fleet.log)
        released = self.scheduler.release(self.now_ms, self.fleet, limit)
        self.timed_ms = self.now_ms
        assert limit is None or len(released) <= limit
        answers = {
            a.job.task_id: a for a in self.fleet.log[log_start:] if isinstance(a.answer, str)
        }
        for item in released:
            self._check_released(item, answers[item.job.task_id])
            del self.held[item.job.task_id]
            self.running.append((item.job, item.agent_id))
            self.release_times[item.job.tenant].append(self.now_ms)
        self._check_rates()
        self._drained()
        self._check_has_waiting()
        if limit is None:
            self._check_nothing_left_placeable()

    def _expire(self) -> None:
        removed = self.scheduler.expire(self.now_ms)
        self.timed_ms = self.now_ms
        for item in removed:
            tracked = self.held.pop(item.job.task_id)
            assert tracked.job == item.job
            if item.reason is DeadLetterReason.EXPIRED:
                last_start_ms = item.job.last_start_ms()
                assert last_start_ms is not None and last_start_ms < self.now_ms
            else:
                assert item.reason is DeadLetterReason.NO_CAPABLE_AGENT
                self._check_no_capable_agent(tracked)
        for tracked in self.held.values():  # every expired task was reported
            assert not self._parked(tracked)
        self._drained()

    def _drained(self) -> None:
        if self.scheduler.held <= self.config.resume_threshold:
            self.paused = False

    # --- checks ------------------------------------------------------------------------------

    def _check_released(self, item: Released, answer: Answer) -> None:
        tracked = self.held.get(item.job.task_id)
        assert tracked is not None and tracked.job == item.job, "released a task not held"
        assert not self._parked(tracked), "released after its last start time"
        now_ms = self.now_ms
        assert item.waited_ms == max(0, now_ms - item.job.submitted_ms)
        assert item.effective_priority == self._eff(item.job)
        waiting = [other for other in self._waiting() if other is not tracked]
        for other in waiting:
            if other.queue() == tracked.queue():
                assert tracked.key < other.key, "released out of EDF-then-arrival order"
        if not self._has_quotas():
            runner = self.fleet.agents[item.agent_id]
            for other in waiting:
                if runner.can_run(other.job):
                    assert self._queue_eff(other) >= item.effective_priority, "inversion"
        self._check_reserve(item, answer)

    def _check_reserve(self, item: Released, answer: Answer) -> None:
        share = self.config.reserved_top_share
        if item.effective_priority >= 1 and share > 0:
            assert answer.free_before > round(share * answer.total_before)

    def _check_rates(self) -> None:
        for tenant, rate_per_s in self.config.tenant_max_rate_per_s.items():
            times_ms = self.release_times[tenant]
            burst = self.config.burst_of(tenant)
            for first, start_ms in enumerate(times_ms):
                count = len(times_ms) - first
                assert count <= burst + rate_per_s * (times_ms[-1] - start_ms) / 1000 + 1e-6

    def _check_has_waiting(self) -> None:
        waiting = self._waiting()
        for runner in self.fleet.agents.values():
            for better_than in range(-1, self.config.levels + 1):
                expected = any(
                    self._queue_eff(other) < better_than and runner.can_run(other.job)
                    for other in waiting
                )
                assert self.scheduler.has_waiting(better_than, runner.can_run) == expected

    def _check_nothing_left_placeable(self) -> None:
        """Work conservation: a waiting task with a free capable agent is held back by a quota
        or the reserved slots, nothing else."""
        free = [runner for runner in self.fleet.agents.values() if runner.free_slots > 0]
        reserved = round(self.config.reserved_top_share * self.fleet.total_slots)
        reserve_reached = self.config.reserved_top_share > 0 and self.fleet.free_slots <= reserved
        limited = set(self.config.tenant_max_in_flight) | set(self.config.tenant_max_rate_per_s)
        for other in self._waiting():
            if any(runner.can_run(other.job) for runner in free):
                held_back = reserve_reached and self._queue_eff(other) >= 1
                assert held_back or other.job.tenant in limited, f"{other.job} left waiting"

    def _check_no_capable_agent(self, tracked: Tracked) -> None:
        """There was NEVER-only evidence for the class spanning the whole timeout."""
        timeout_ms = self.config.no_capable_agent_timeout_ms
        assert timeout_ms is not None
        answers = [a for a in self.fleet.log if class_of(a.job) == class_of(tracked.job)]
        assert answers and answers[-1].answer is NEVER
        since_ms = answers[-1].now_ms
        for earlier in reversed(answers):
            if earlier.answer is not NEVER:
                break
            since_ms = earlier.now_ms
        assert answers[-1].now_ms - max(since_ms, tracked.offered_ms) >= timeout_ms

    # --- model helpers -----------------------------------------------------------------------

    def _parked(self, tracked: Tracked) -> bool:
        last_start_ms = tracked.job.last_start_ms()
        return last_start_ms is not None and last_start_ms < self.timed_ms

    def _waiting(self) -> list[Tracked]:
        return [tracked for tracked in self.held.values() if not self._parked(tracked)]

    def _eff(self, job: Job) -> int:
        config = self.config
        return effective_priority(
            job, self.now_ms, aging_ms=config.aging_ms, escalation_ms=config.escalation_ms
        )

    def _queue_eff(self, tracked: Tracked) -> int:
        """A task competes at the effective priority of its queue's head."""
        mates = [other for other in self._waiting() if other.queue() == tracked.queue()]
        return self._eff(min(mates, key=lambda other: other.key).job)

    def _has_quotas(self) -> bool:
        return bool(self.config.tenant_max_in_flight or self.config.tenant_max_rate_per_s)

    def _copies(self) -> tuple[Scheduler, Fleet]:
        return copy.deepcopy(self.scheduler), copy.deepcopy(self.fleet)


SchedulerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSchedulerLifecycle = SchedulerMachine.TestCase


@given(max_held=st.integers(2, 60), data=st.data())
def test_back_pressure_pauses_at_the_bound_and_resumes_at_the_low_watermark(
    max_held: int, data: st.DataObject
) -> None:
    resume_at = data.draw(st.integers(0, max_held - 1))
    scheduler = Scheduler(SchedulerConfig(max_held=max_held, resume_at=resume_at))
    for index in range(max_held + 5):  # beyond the bound: still held, never dropped
        assert scheduler.paused == (index >= max_held)
        assert scheduler.offer(job(f"t{index}"), 0) is OfferResult.HELD
    assert scheduler.held == max_held + 5
    fleet = Fleet([agent("one", capacity=1)])
    while scheduler.held > 0:
        fleet.agents["one"].in_flight = 0
        scheduler.release(0, fleet)
        assert scheduler.paused == (scheduler.held > resume_at)


def test_a_task_id_is_never_held_twice_and_cancel_takes_it_out() -> None:
    scheduler = Scheduler(SchedulerConfig())
    assert scheduler.offer(job("x", 2), 0) is OfferResult.HELD
    assert scheduler.offer(job("x", 0), 0) is OfferResult.DUPLICATE
    assert scheduler.held == 1 and scheduler.depth_by_priority() == {0: 0, 1: 0, 2: 1, 3: 0}
    assert scheduler.remove("x") == job("x", 2)
    assert scheduler.remove("x") is None
    assert scheduler.release(0, Fleet([agent("a")])) == []
    assert scheduler.offer(job("x", 0), 0) is OfferResult.HELD  # a new life after cancel


def test_a_priority_outside_the_levels_is_a_misuse() -> None:
    scheduler = Scheduler(SchedulerConfig(levels=2))
    with pytest.raises(CoreError, match=r"priority 2; levels are 0\.\.1"):
        scheduler.offer(job("x", 2), 0)
