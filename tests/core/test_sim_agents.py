"""The simulated agent: slots, its local FIFO, crashes, and the failure draws."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.model import Job
from streams.core.sim import AgentGroup, SimAgent, failure_draw
from streams.errors import CoreError

GROUP = AgentGroup(name="g", count=1, capacity=2, speed=2.0, skills=frozenset({"s"}), zone="eu")


def job(n: int, attempt: int = 0, priority: int = 0) -> Job:
    return Job(task_id=f"t{n}", priority=priority, submitted_ms=0, attempt=attempt)


def test_runs_take_work_over_speed() -> None:
    agent = SimAgent("g-001", GROUP)
    start = agent.deliver(job(1), 3.0, now_ms=100)
    assert start is not None
    assert (start.started_ms, start.finish_ms) == (100, 1_600)


def test_a_full_agent_queues_in_fifo_order_and_starts_when_a_slot_frees() -> None:
    agent = SimAgent("g-001", GROUP)
    assert agent.deliver(job(1), 1.0, 0) is not None
    assert agent.deliver(job(2), 1.0, 0) is not None
    assert agent.deliver(job(3), 1.0, 0) is None
    assert agent.deliver(job(4), 1.0, 0) is None
    assert (agent.running, agent.waiting, agent.queued) == (2, 2, 2)
    live, following = agent.finish(job(2), agent.incarnation, 500)
    assert live and following is not None and following.job == job(3)
    assert following.started_ms == 500
    assert agent.peak_running == 2


def test_a_crash_loses_everything_and_makes_old_finishes_stale() -> None:
    agent = SimAgent("g-001", GROUP)
    agent.deliver(job(1), 1.0, 0)
    agent.deliver(job(2), 1.0, 0)
    agent.deliver(job(3), 1.0, 0)
    old = agent.incarnation
    assert agent.crash(200) == 3
    assert agent.deliver(job(4), 1.0, 300) is None  # a crashed agent takes nothing
    agent.recover(1_000)
    assert agent.finish(job(1), old, 1_100) == (False, None)
    assert (agent.running, agent.waiting) == (0, 0)
    assert agent.busy_ms == 2 * 200
    assert agent.available_ms(2_000) == 2 * 200 + 2 * 1_000


def test_a_start_from_the_fifo_ahead_of_a_more_urgent_task_is_a_local_inversion() -> None:
    agent = SimAgent("g-001", replace(GROUP, capacity=1))
    agent.deliver(job(1, priority=2), 1.0, 0)
    agent.deliver(job(2, priority=3), 1.0, 0)
    agent.deliver(job(3, priority=0), 1.0, 0)
    agent.deliver(job(4, priority=3), 1.0, 0)
    _, following = agent.finish(job(1, priority=2), agent.incarnation, 10)
    assert following is not None and following.job.task_id == "t2"
    assert agent.inversions == 1  # t2 (priority 3) started while t3 (priority 0) waited
    _, following = agent.finish(job(2, priority=3), agent.incarnation, 20)
    assert following is not None and following.job.task_id == "t3"
    _, following = agent.finish(job(3, priority=0), agent.incarnation, 30)
    assert following is not None and following.job.task_id == "t4"
    assert agent.inversions == 1


def test_an_attempt_delivered_twice_is_refused() -> None:
    agent = SimAgent("g-001", GROUP)
    agent.deliver(job(1), 1.0, 0)
    with pytest.raises(CoreError, match="twice"):
        agent.deliver(job(1), 1.0, 0)


def test_heartbeats_offer_the_group() -> None:
    beat = SimAgent("g-001", GROUP).heartbeat(1_234)
    assert (beat.agent_id, beat.capacity, beat.skills, beat.zone, beat.status, beat.sent_ms) == (
        "g-001",
        2,
        frozenset({"s"}),
        "eu",
        "READY",
        1_234,
    )


def test_an_agent_with_prefetch_offers_its_prefetch_as_slots_but_runs_only_its_own() -> None:
    agent = SimAgent("g-001", replace(GROUP, prefetch=3))
    assert agent.heartbeat(0).capacity == 2 + 3
    starts = [agent.deliver(job(n), 1.0, 0) for n in range(1, 6)]
    assert [start is not None for start in starts] == [True, True, False, False, False]
    assert (agent.running, agent.waiting, agent.peak_running) == (2, 3, 2)


def test_prefetched_tasks_start_most_urgent_first_then_by_deadline_then_in_order() -> None:
    """As a real agent's runner orders what it fetched: no local inversions."""
    agent = SimAgent("g-001", replace(GROUP, capacity=1, prefetch=4))
    agent.deliver(job(1, priority=3), 1.0, 0)
    agent.deliver(job(2, priority=2), 1.0, 0)
    agent.deliver(replace(job(3, priority=1), deadline_ms=900), 1.0, 0)
    agent.deliver(job(4, priority=1), 1.0, 0)
    agent.deliver(replace(job(5, priority=1), deadline_ms=500), 1.0, 0)
    order = []
    running = job(1, priority=3)
    for now_ms in range(10, 50, 10):
        _, following = agent.finish(running, agent.incarnation, now_ms)
        assert following is not None
        running = following.job
        order.append(running.task_id)
    assert order == ["t5", "t3", "t4", "t2"]
    assert agent.inversions == 0


Op = tuple[str, int]


@given(
    capacity=st.integers(1, 4),
    ops=st.lists(
        st.tuples(st.sampled_from(["deliver", "finish", "crash", "recover"]), st.integers(0, 9)),
        max_size=80,
    ),
)
def test_never_more_runs_than_slots_and_fifo_against_a_model(capacity: int, ops: list[Op]) -> None:
    """Any sequence of deliveries, finishes, crashes and recoveries keeps the slot bound,
    queued tasks start in delivery order, and local inversions are counted as a plain model of
    the agent counts them."""
    agent = SimAgent("g-001", AgentGroup(name="g", count=1, capacity=capacity, speed=1.0))
    running: dict[str, int] = {}
    waiting: deque[str] = deque()
    priority: dict[str, int] = {}
    up, delivered, inversions = True, 0, 0
    for now_ms, (op, n) in enumerate(ops):
        if op == "deliver":
            delivered += 1
            task = job(delivered, priority=n % 4)
            priority[task.task_id] = task.priority
            start = agent.deliver(task, 1.0, now_ms)
            if up and len(running) < capacity:
                assert start is not None and start.job == task
                running[task.task_id] = agent.incarnation
            else:
                assert start is None
                if up:
                    waiting.append(task.task_id)
        elif op == "finish" and running:
            task_id = sorted(running)[n % len(running)]
            finished = Job(task_id, priority[task_id], 0)
            live, following = agent.finish(finished, running.pop(task_id), now_ms)
            assert live
            if waiting:
                expected = waiting.popleft()
                inversions += any(priority[t] < priority[expected] for t in waiting)
                assert following is not None and following.job.task_id == expected
                running[expected] = agent.incarnation
            else:
                assert following is None
        elif op == "crash":
            assert agent.crash(now_ms) == (len(running) + len(waiting) if up else 0)
            running.clear()
            waiting.clear()
            up = False
        elif op == "recover":
            agent.recover(now_ms)
            up = True
        assert agent.running == len(running) <= capacity
        assert agent.waiting == len(waiting)
        assert agent.up is up
        assert agent.inversions == inversions
    assert agent.peak_running <= capacity


@given(
    capacity=st.integers(1, 3),
    prefetch=st.integers(1, 3),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=60),
)
def test_with_prefetch_the_next_start_is_always_a_most_urgent_waiting_task(
    capacity: int, prefetch: int, ops: list[tuple[bool, int]]
) -> None:
    group = AgentGroup(name="g", count=1, capacity=capacity, speed=1.0, prefetch=prefetch)
    agent = SimAgent("g-001", group)
    running: list[Job] = []
    waiting: list[Job] = []
    for now_ms, (deliver, n) in enumerate(ops):
        if deliver:
            task = job(now_ms, priority=n % 4)
            start = agent.deliver(task, 1.0, now_ms)
            (running if start is not None else waiting).append(task)
        elif running:
            finished = running.pop(n % len(running))
            _, following = agent.finish(finished, agent.incarnation, now_ms)
            if waiting:
                assert following is not None
                assert following.job.priority == min(task.priority for task in waiting)
                waiting.remove(following.job)
                running.append(following.job)
        assert agent.running == len(running) <= capacity
        assert agent.waiting == len(waiting)
    assert agent.inversions == 0


@given(seed=st.integers(0, 2**31), task=st.integers(0, 10**6), attempt=st.integers(0, 5))
def test_failure_draws_are_fixed_by_seed_task_and_attempt(
    seed: int, task: int, attempt: int
) -> None:
    draw = failure_draw(seed, f"t{task}", attempt)
    assert 0.0 <= draw < 1.0
    assert draw == failure_draw(seed, f"t{task}", attempt)
    assert draw != failure_draw(seed, f"t{task}", attempt + 1)


def test_failure_draws_are_uniform() -> None:
    draws = [failure_draw(3, f"t{n}", 0) for n in range(20_000)]
    # Uniform(0, 1): mean 0.5 with sd 0.002 over 20,000 draws; 5% of them below 0.05.
    assert statistics.fmean(draws) == pytest.approx(0.5, abs=0.01)
    assert sum(d < 0.05 for d in draws) / len(draws) == pytest.approx(0.05, abs=0.006)


@given(
    capacity=st.integers(1, 3),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["deliver", "finish", "crash", "recover"]),
            st.integers(0, 9),
            st.integers(0, 50),
        ),
        max_size=60,
    ),
)
def test_occupied_time_is_the_time_with_at_least_one_task_running(
    capacity: int, ops: list[tuple[str, int, int]]
) -> None:
    """Whatever happens, the agent-ms with a task running are those a plain model counts, at
    most the time it was up, and at least its slot-ms of running over its slots."""
    agent = SimAgent("g-001", AgentGroup(name="g", count=1, capacity=capacity, speed=1.0))
    running: list[Job] = []
    occupied, now_ms, delivered = 0, 0, 0
    for op, n, elapsed_ms in ops:
        if running:
            occupied += elapsed_ms
        now_ms += elapsed_ms
        if op == "deliver":
            delivered += 1
            if agent.deliver(job(delivered), 1.0, now_ms) is not None:
                running.append(job(delivered))
        elif op == "finish" and running:
            _, following = agent.finish(running.pop(n % len(running)), agent.incarnation, now_ms)
            if following is not None:
                running.append(following.job)
        elif op == "crash":
            agent.crash(now_ms)
            running.clear()
        elif op == "recover":
            agent.recover(now_ms)
        assert agent.occupied_at(now_ms) == occupied
    up_ms = agent.available_ms(now_ms) // capacity
    assert agent.busy_at(now_ms) / capacity <= agent.occupied_at(now_ms) <= up_ms
    assert agent.occupied_at(now_ms) <= agent.busy_at(now_ms)
