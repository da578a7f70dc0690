"""Priority: effective priority over time, earliest deadline first, escalation, the aging bound."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.model import Job
from streams.core.scheduling import (
    ESCALATED,
    Scheduler,
    SchedulerConfig,
    effective_priority,
    next_change_ms,
)
from tests.core.test_scheduler_fakes import Fleet, agent, job, order_key

agings = st.one_of(st.none(), st.integers(1, 500))
escalations = st.integers(0, 300)
offsets = st.one_of(st.none(), st.integers(-50, 2_000))


@st.composite
def timed_jobs(draw: st.DrawFn) -> tuple[Job, int]:
    """A job and a time at which it is still held (not past its last start)."""
    now_ms = draw(st.integers(0, 5_000))
    deadline, ttl = draw(offsets), draw(offsets)
    candidate = job(
        "x",
        draw(st.integers(0, 5)),
        submitted_ms=now_ms - draw(st.integers(-100, 3_000)),
        deadline_ms=None if deadline is None else now_ms + deadline,
        expires_ms=None if ttl is None else now_ms + ttl,
    )
    last_start_ms = candidate.last_start_ms()
    if last_start_ms is not None and last_start_ms < now_ms:
        now_ms = last_start_ms
    return candidate, now_ms


@given(timed=timed_jobs(), aging_ms=agings, escalation_ms=escalations, data=st.data())
def test_effective_priority_holds_until_next_change_and_changes_there(
    timed: tuple[Job, int], aging_ms: int | None, escalation_ms: int, data: st.DataObject
) -> None:
    candidate, now_ms = timed
    eff = partial(effective_priority, aging_ms=aging_ms, escalation_ms=escalation_ms)
    current = eff(candidate, now_ms)
    change_ms = next_change_ms(candidate, now_ms, aging_ms=aging_ms, escalation_ms=escalation_ms)
    last_start_ms = candidate.last_start_ms()
    horizon_ms = now_ms + 10_000 if last_start_ms is None else last_start_ms  # held until then
    until_ms = horizon_ms if change_ms is None else min(horizon_ms, change_ms - 1)
    assert change_ms is None or change_ms > now_ms
    if until_ms >= now_ms:
        probe_ms = data.draw(st.integers(now_ms, until_ms))
        assert eff(candidate, probe_ms) == current
    if change_ms is not None:
        assert eff(candidate, change_ms) != current


@given(
    timed=timed_jobs(), aging_ms=agings, escalation_ms=escalations, later_ms=st.integers(0, 9_000)
)
def test_effective_priority_never_worsens_with_time(
    timed: tuple[Job, int], aging_ms: int | None, escalation_ms: int, later_ms: int
) -> None:
    candidate, now_ms = timed
    eff = partial(effective_priority, aging_ms=aging_ms, escalation_ms=escalation_ms)
    before = eff(candidate, now_ms)
    after = eff(candidate, now_ms + later_ms)
    assert ESCALATED <= after <= before <= candidate.priority


@given(timed=timed_jobs(), aging_ms=st.integers(1, 500))
def test_aging_raises_one_level_per_aging_period(timed: tuple[Job, int], aging_ms: int) -> None:
    candidate, now_ms = timed
    waited_ms = max(0, now_ms - candidate.submitted_ms)
    expected = max(0, candidate.priority - waited_ms // aging_ms)
    assert effective_priority(candidate, now_ms, aging_ms=aging_ms, escalation_ms=0) == expected


@given(timed=timed_jobs(), escalation_ms=st.integers(1, 300))
def test_a_task_within_escalation_of_its_last_start_is_escalated(
    timed: tuple[Job, int], escalation_ms: int
) -> None:
    candidate, now_ms = timed
    last_start_ms = candidate.last_start_ms()
    escalated = last_start_ms is not None and last_start_ms - now_ms < escalation_ms
    eff = effective_priority(candidate, now_ms, aging_ms=None, escalation_ms=escalation_ms)
    assert (eff == ESCALATED) == escalated
    assert escalated or eff == candidate.priority


deadline_specs = st.tuples(
    st.one_of(st.none(), st.integers(0, 1_000)),  # deadline
    st.one_of(st.none(), st.integers(0, 1_000)),  # ttl
    st.integers(-500, 0),  # submitted
    st.sampled_from(["", "gpu", "arm"]),  # skill
)


@given(specs=st.lists(deadline_specs, min_size=1, max_size=40))
def test_one_level_and_tenant_release_earliest_deadline_then_arrival(
    specs: list[tuple[int | None, int | None, int, str]],
) -> None:
    scheduler = Scheduler(SchedulerConfig(levels=1, aging_ms=None, escalation_ms=0))
    offered: dict[str, tuple[float, int, int]] = {}
    for seq, (deadline, ttl, submitted, skill) in enumerate(specs):
        task = job(
            f"t{seq}",
            submitted_ms=submitted,
            skills=[skill] if skill else [],
            deadline_ms=deadline,
            expires_ms=ttl,
        )
        scheduler.offer(task, 0)
        offered[task.task_id] = order_key(task, seq)
    fleet = Fleet([agent("all", capacity=100, skills=["gpu", "arm"])])
    released = [item.job.task_id for item in scheduler.release(0, fleet)]
    assert released == sorted(offered, key=offered.__getitem__)


@given(
    urgent=st.lists(st.integers(0, 2), min_size=1, max_size=10),
    escalation_ms=st.integers(1, 1_000),
    left_ms=st.integers(0, 999),
)
def test_an_escalated_task_goes_before_every_level(
    urgent: list[int], escalation_ms: int, left_ms: int
) -> None:
    """A lowest-level task about to miss its deadline overtakes even level 0."""
    left_ms = min(left_ms, escalation_ms - 1)
    scheduler = Scheduler(SchedulerConfig(levels=4, aging_ms=None, escalation_ms=escalation_ms))
    for index, level in enumerate(urgent):
        scheduler.offer(job(f"u{index}", level), 0)
    scheduler.offer(job("late", 3, deadline_ms=left_ms), 0)
    first = scheduler.release(0, Fleet([agent("a", capacity=1)]))
    assert [(item.job.task_id, item.effective_priority) for item in first] == [("late", ESCALATED)]


@given(
    levels=st.integers(2, 4),
    aging_ms=st.integers(1, 40),
    flood=st.integers(1, 3),
    x_at_ms=st.integers(0, 30),
    x_level=st.integers(1, 3),
)
def test_aging_bounds_the_wait_under_a_flood_of_urgent_work(
    levels: int, aging_ms: int, flood: int, x_at_ms: int, x_level: int
) -> None:
    """One slot, one release per ms, ``flood`` new level-0 tasks per ms: the backlog only grows.

    Task x (level p, offered at s) must start by s + p*A + N, N being the tasks submitted before
    it and still held at s + p*A: from then on only those go ahead of it.
    """
    x_level = min(x_level, levels - 1)
    scheduler = Scheduler(SchedulerConfig(levels=levels, aging_ms=aging_ms, escalation_ms=0))
    fleet = Fleet([agent("solo", capacity=1)])
    top_ms = x_at_ms + x_level * aging_ms
    held: dict[str, int] = {}  # task id -> submitted_ms, in offer order
    ahead_at_top: int | None = None
    started_ms: int | None = None
    for now_ms in range(top_ms + 2_000):
        fleet.agents["solo"].in_flight = 0
        for index in range(flood):
            scheduler.offer(job(f"f{now_ms}.{index}", 0, submitted_ms=now_ms), now_ms)
            held[f"f{now_ms}.{index}"] = now_ms
        if now_ms == x_at_ms:
            scheduler.offer(job("x", x_level, submitted_ms=now_ms), now_ms)
            held["x"] = now_ms
        if now_ms == top_ms:
            order = list(held)
            ahead_at_top = order.index("x")  # submitted before x, or with it but offered first
        released = scheduler.release(now_ms, fleet)
        assert len(released) == 1
        del held[released[0].job.task_id]
        if released[0].job.task_id == "x":
            started_ms = now_ms
            break
    assert ahead_at_top is not None and started_ms is not None
    assert started_ms <= top_ms + ahead_at_top


def test_without_aging_the_same_flood_starves_the_low_level() -> None:
    """The contrast that shows aging is what bounds the wait."""
    scheduler = Scheduler(SchedulerConfig(levels=2, aging_ms=None, escalation_ms=0))
    fleet = Fleet([agent("solo", capacity=1)])
    scheduler.offer(job("x", 1), 0)
    for now_ms in range(500):
        fleet.agents["solo"].in_flight = 0
        scheduler.offer(job(f"f{now_ms}", 0, submitted_ms=now_ms), now_ms)
        assert [item.job.task_id for item in scheduler.release(now_ms, fleet)] == [f"f{now_ms}"]


@st.composite
def aging_runs(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, int]]]:
    levels = draw(st.integers(1, 4))
    aging_ms = draw(st.integers(1, 60))
    steps = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("offer"), st.integers(0, levels - 1)),
                st.tuples(st.just("tick"), st.integers(1, 40)),
                st.tuples(st.just("release"), st.integers(1, 3)),
            ),
            max_size=80,
        )
    )
    return levels, aging_ms, steps


@given(run=aging_runs())
def test_once_aged_to_the_top_a_task_is_overtaken_only_by_tasks_submitted_before_it(
    run: tuple[int, int, list[tuple[str, int]]],
) -> None:
    """The aging theorem itself, for any arrivals and capacity (one tenant, one class)."""
    levels, aging_ms, steps = run
    scheduler = Scheduler(SchedulerConfig(levels=levels, aging_ms=aging_ms, escalation_ms=0))
    held: dict[str, tuple[Job, tuple[float, int, int]]] = {}
    now_ms = 0
    for seq, (action, value) in enumerate(steps):
        if action == "offer":
            task = job(f"t{seq}", value, submitted_ms=now_ms)
            scheduler.offer(task, now_ms)
            held[task.task_id] = (task, order_key(task, seq))
        elif action == "tick":
            now_ms += value
        else:
            fleet = Fleet([agent("a", capacity=value)])
            for item in scheduler.release(now_ms, fleet):
                released_key = held.pop(item.job.task_id)[1]
                for waiting, key in held.values():
                    if now_ms >= waiting.submitted_ms + waiting.priority * aging_ms:
                        assert released_key < key


@st.composite
def timer_runs(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, int, int | None, int]]]:
    aging_ms = draw(st.integers(1, 80))
    escalation_ms = draw(st.integers(0, 80))
    step = st.one_of(
        st.tuples(
            st.just("offer"),
            st.integers(1, 2),  # level
            st.one_of(st.none(), st.integers(0, 400)),  # deadline from now
            st.integers(0, 200),  # age at offer
        ),
        st.tuples(st.just("tick"), st.integers(1, 90), st.none(), st.just(0)),
        st.tuples(st.just("cancel"), st.integers(0, 40), st.none(), st.just(0)),
    )
    return aging_ms, escalation_ms, draw(st.lists(step, min_size=4, max_size=60))


@settings(max_examples=400)
@given(run=timer_runs())
def test_queues_stand_at_their_heads_effective_priority_at_every_moment(
    run: tuple[int, int, list[tuple[str, int, int | None, int]]],
) -> None:
    """Aging and escalation timers fire on time whatever the arrivals: ``has_waiting`` (the
    scheduler's own view) matches the formula applied to each queue's head after each step."""
    aging_ms, escalation_ms, steps = run
    eff = partial(effective_priority, aging_ms=aging_ms, escalation_ms=escalation_ms)
    scheduler = Scheduler(SchedulerConfig(levels=3, aging_ms=aging_ms, escalation_ms=escalation_ms))
    held: dict[str, tuple[Job, tuple[float, int, int]]] = {}
    now_ms = 0
    for seq, (action, value, deadline, age_ms) in enumerate(steps):
        if action == "offer":
            deadline_ms = None if deadline is None else now_ms + deadline
            task = job(f"t{seq}", value, submitted_ms=now_ms - age_ms, deadline_ms=deadline_ms)
            scheduler.offer(task, now_ms)
            held[task.task_id] = (task, order_key(task, seq))
        elif action == "tick":
            now_ms += value
        elif scheduler.remove(f"t{value}") is not None:
            del held[f"t{value}"]
        for removed in scheduler.expire(now_ms):
            del held[removed.job.task_id]
        heads: dict[int, tuple[float, int, int]] = {}
        for task, key in held.values():
            heads[task.priority] = min(key, heads.get(task.priority, key))
        effs = [eff(task, now_ms) for task, key in held.values() if heads[task.priority] == key]
        for better_than in range(-1, 4):
            expected = any(eff < better_than for eff in effs)
            assert scheduler.has_waiting(better_than, lambda _: True) == expected


@given(timed=timed_jobs(), aging_ms=agings, escalation_ms=escalations)
def test_next_wakeup_is_the_next_aging_step_escalation_or_expiry(
    timed: tuple[Job, int], aging_ms: int | None, escalation_ms: int
) -> None:
    candidate, now_ms = timed
    scheduler = Scheduler(SchedulerConfig(aging_ms=aging_ms, escalation_ms=escalation_ms))
    scheduler.offer(replace(candidate, priority=min(candidate.priority, 3)), now_ms)
    scheduler.expire(now_ms)
    held = replace(candidate, priority=min(candidate.priority, 3))
    changes = [next_change_ms(held, now_ms, aging_ms=aging_ms, escalation_ms=escalation_ms)]
    last_start_ms = held.last_start_ms()
    changes.append(None if last_start_ms is None else last_start_ms + 1)
    expected = min((at_ms for at_ms in changes if at_ms is not None), default=None)
    assert scheduler.next_wakeup_ms(now_ms) == expected


def test_a_queue_whose_next_head_aged_further_is_served_in_the_same_call() -> None:
    """Level 0 is blocked (no gpu agent); taking the level-1 head exposes an older task that
    stands at level 0 by aging: it still goes in this call, as a cpu slot is free."""
    scheduler = Scheduler(SchedulerConfig(levels=2, aging_ms=100, escalation_ms=0))
    scheduler.offer(job("gpu", 0, skills=["gpu"]), 0)
    scheduler.offer(job("urgent", 1, submitted_ms=0, deadline_ms=10_000), 0)
    scheduler.offer(job("old", 1, submitted_ms=-100), 0)
    released = scheduler.release(0, Fleet([agent("cpu", capacity=2)]))
    assert [(item.job.task_id, item.effective_priority) for item in released] == [
        ("urgent", 1),
        ("old", 0),
    ]


def test_a_submitter_clock_ahead_counts_as_no_wait() -> None:
    scheduler = Scheduler(SchedulerConfig(aging_ms=10))
    scheduler.offer(job("x", 3, submitted_ms=500), 0)
    (released,) = scheduler.release(0, Fleet([agent("a")]))
    assert (released.waited_ms, released.effective_priority) == (0, 3)
