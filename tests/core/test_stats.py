"""Statistics: quantiles, queue times, utilization and balance, deadlines, the JSON summary."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.model import DeadLetterReason, Job
from streams.core.stats import (
    BREAKDOWN_KEYS,
    OTHER,
    SKETCH_ACCURACY,
    Counts,
    Series,
    Statistics,
    Summary,
    nearest_rank,
)
from streams.errors import ConfigError, CoreError


def reference_rank(values: list[int], percent: int) -> int:
    """Nearest rank by its textbook definition: the ceil(p/100 * n)-th smallest value."""
    return sorted(values)[math.ceil(Fraction(percent, 100) * len(values)) - 1]


# --- quantiles -----------------------------------------------------------------------------


@given(st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=300), st.integers(1, 100))
def test_nearest_rank_is_the_smallest_sample_covering_p_percent(
    values: list[int], percent: int
) -> None:
    value = nearest_rank(sorted(values), percent)
    assert value in values
    assert 100 * sum(1 for v in values if v <= value) >= percent * len(values)
    assert 100 * sum(1 for v in values if v < value) < percent * len(values)


def test_nearest_rank_examples_and_misuse() -> None:
    assert nearest_rank([1, 2, 3, 4], 50) == 2
    assert nearest_rank([1, 2, 3, 4], 51) == 3
    assert nearest_rank(list(range(1, 101)), 99) == 99
    assert nearest_rank([7], 1) == 7
    for bad in (0, 101):
        with pytest.raises(CoreError):
            nearest_rank([1], bad)
    with pytest.raises(CoreError):
        nearest_rank([], 50)


# --- queue times and dispatch latency --------------------------------------------------------

TASKS = st.lists(
    st.tuples(
        st.integers(0, 3),  # priority
        st.integers(0, 10_000),  # submitted_ms
        st.integers(0, 5_000),  # dispatch latency
        st.integers(0, 5_000),  # then wait to start
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=80)
@given(TASKS, st.integers(0, 200))
def test_queue_and_dispatch_times_equal_a_reference(
    tasks: list[tuple[int, int, int, int]], peek_after: int
) -> None:
    run = Statistics(levels=4)
    for i, (priority, submitted_ms, latency_ms, wait_ms) in enumerate(tasks):
        job = Job(f"t{i}", priority, submitted_ms)
        run.task_received(job, submitted_ms)
        run.task_dispatched(job, "a", submitted_ms + latency_ms)
        run.task_started(job, "a", submitted_ms + latency_ms + wait_ms)
        if i == peek_after:
            run.summary(0)  # a summary in between must not disturb later ones
    summary = run.summary(20_000)
    queue = [latency + wait for _, _, latency, wait in tasks]
    dispatch = [latency for _, _, latency, _ in tasks]
    assert summary.tasks == len(tasks)
    assert summary.mean_queue_ms == statistics.mean(queue)
    assert summary.p50_queue_ms == reference_rank(queue, 50)
    assert summary.p99_queue_ms == reference_rank(queue, 99)
    assert summary.mean_dispatch_ms == statistics.mean(dispatch)
    assert summary.p50_dispatch_ms == reference_rank(dispatch, 50)
    assert summary.p99_dispatch_ms == reference_rank(dispatch, 99)
    for level in range(4):
        mine = [latency + wait for p, _, latency, wait in tasks if p == level]
        got = summary.queue_by_priority[level]
        assert got.count == len(mine)
        assert got.mean_ms == (statistics.mean(mine) if mine else None)
        assert got.p99_ms == (reference_rank(mine, 99) if mine else None)


def test_only_the_first_start_and_dispatch_of_a_task_count() -> None:
    run = Statistics()
    job = Job("t", 0, submitted_ms=0)
    run.task_received(job, 0)
    run.task_received(job, 0)  # duplicate delivery
    run.task_dispatched(job, "a", 10)
    run.task_started(job, "a", 30)
    run.task_dispatched(job, "b", 500)  # failover: a second attempt
    run.task_started(job, "b", 600)
    run.task_started(Job("never-received", 0, 0), "a", 700)
    lost = Job("lost-before-start", 0, submitted_ms=100)
    run.task_received(lost, 100)
    run.task_dispatched(lost, "a", 110)
    run.task_dispatched(lost, "b", 300)  # the agent died before starting it
    run.task_started(lost, "b", 330)
    summary = run.summary(1_000)
    assert (summary.tasks, summary.dispatched) == (2, 4)
    assert (summary.mean_queue_ms, summary.p99_queue_ms) == (130, 230)
    assert (summary.mean_dispatch_ms, summary.p99_dispatch_ms) == (10, 10)


def test_statistics_of_nothing_are_none_and_balance_is_zero() -> None:
    summary = Statistics().summary(1_000)
    assert summary.mean_queue_ms is None and summary.p99_queue_ms is None
    assert summary.mean_dispatch_ms is None and summary.deadline_success is None
    assert summary.affinity_hit_rate is None
    assert (summary.utilization, summary.load_cv, summary.max_load_ratio) == (0.0, 0.0, 0.0)


# --- utilization and balance ----------------------------------------------------------------


@st.composite
def agent_loads(draw: st.DrawFn) -> tuple[int, list[tuple[int, list[tuple[int, int]]]]]:
    """A horizon and, per agent, a capacity and busy intervals never exceeding it."""
    horizon_ms = draw(st.integers(1, 5_000))
    agents = []
    for _ in range(draw(st.integers(1, 5))):
        capacity = draw(st.integers(1, 3))
        intervals = []
        for _ in range(capacity):  # each slot runs disjoint intervals one after another
            cuts = sorted(draw(st.lists(st.integers(0, horizon_ms), max_size=8)))
            pairs = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
            intervals += [(start, end) for start, end in pairs if start < end]
        agents.append((capacity, intervals))
    return horizon_ms, agents


def run_loads(horizon_ms: int, agents: list[tuple[int, list[tuple[int, int]]]]) -> Summary:
    """Feed the dispatches and finishes in time order (finishes first at equal times)."""
    run = Statistics()
    events: list[tuple[int, int, str, Job]] = []
    for a, (capacity, intervals) in enumerate(agents):
        run.agent_capacity(f"agent{a}", capacity, 0)
        for i, (start_ms, end_ms) in enumerate(intervals):
            job = Job(f"{a}-{i}", 0, start_ms)
            events += [(start_ms, 1, f"agent{a}", job), (end_ms, 0, f"agent{a}", job)]
    for at_ms, kind, agent_id, job in sorted(events, key=lambda e: (e[0], e[1], e[3].task_id)):
        if kind == 1:
            run.task_dispatched(job, agent_id, at_ms)
        else:
            run.task_finished(job, agent_id, at_ms, "SUCCEEDED")
    return run.summary(horizon_ms)


def reference_busy_slot_ms(capacity: int, intervals: list[tuple[int, int]], horizon_ms: int) -> int:
    """Millisecond by millisecond: held tasks, never more than the capacity."""
    return sum(
        min(capacity, sum(1 for start, end in intervals if start <= t < end))
        for t in range(horizon_ms)
    )


@settings(max_examples=80)
@given(agent_loads())
def test_utilization_is_busy_over_available_slot_time(
    loads: tuple[int, list[tuple[int, list[tuple[int, int]]]]],
) -> None:
    horizon_ms, agents = loads
    summary = run_loads(horizon_ms, agents)
    busy = [sum(end - start for start, end in intervals) for _, intervals in agents]
    available = [capacity * horizon_ms for capacity, _ in agents]
    per_agent = [b / a for b, a in zip(busy, available, strict=True)]
    assert list(summary.agent_utilization.values()) == per_agent
    assert all(0.0 <= u <= 1.0 for u in per_agent)
    assert summary.utilization == sum(busy) / sum(available)
    assert 0.0 <= summary.utilization <= 1.0
    mean = statistics.mean(per_agent)
    if mean == 0:
        assert (summary.load_cv, summary.max_load_ratio) == (0.0, 0.0)
    else:
        assert summary.load_cv == pytest.approx(statistics.pstdev(per_agent) / mean)
        assert summary.max_load_ratio == pytest.approx(max(per_agent) / mean)
        assert summary.max_load_ratio >= 1.0


@settings(max_examples=50)
@given(agent_loads(), st.integers(2, 6))
def test_identical_loads_are_perfectly_balanced(
    loads: tuple[int, list[tuple[int, list[tuple[int, int]]]]], copies: int
) -> None:
    horizon_ms, agents = loads
    summary = run_loads(horizon_ms, [agents[0]] * copies)
    assert summary.load_cv == 0.0
    assert summary.max_load_ratio == (1.0 if summary.utilization > 0 else 0.0)


def test_available_time_counts_only_while_the_agent_is_up() -> None:
    run = Statistics()
    run.agent_capacity("a", 2, 0)
    job = Job("t", 0, 0)
    run.task_dispatched(job, "a", 0)
    run.agent_capacity("a", 0, 100)  # down
    run.task_finished(job, "a", 120, "LOST")
    run.agent_capacity("a", 2, 200)  # back
    run.task_dispatched(Job("u", 0, 0), "a", 250)  # still running: counted up to now
    summary = run.summary(300)
    assert summary.agent_utilization == {"a": (100 + 50) / 400}
    assert summary.completed == 0 and summary.finished == {"LOST": 1}


@settings(max_examples=60)
@given(agent_loads(), st.lists(st.tuples(st.integers(0, 5_000), st.integers(0, 300)), max_size=6))
def test_an_agent_is_never_more_than_fully_busy(
    loads: tuple[int, list[tuple[int, list[tuple[int, int]]]]],
    extra: list[tuple[int, int]],
) -> None:
    """Overbooked (extra overlapping tasks), utilization is held slots capped at capacity."""
    horizon_ms, agents = loads
    capacity, intervals = agents[0]
    overbooked = intervals + [(start, min(horizon_ms, start + length)) for start, length in extra]
    overbooked = [(start, end) for start, end in overbooked if start < end <= horizon_ms]
    summary = run_loads(horizon_ms, [(capacity, overbooked)])
    busy = reference_busy_slot_ms(capacity, overbooked, horizon_ms)
    assert summary.agent_utilization == {"agent0": busy / (capacity * horizon_ms)}
    assert 0.0 <= summary.utilization <= 1.0


def test_an_event_stamped_before_the_agents_last_one_counts_at_that_last_time() -> None:
    run = Statistics()
    run.agent_capacity("a", 1, 0)
    run.agent_capacity("b", 1, 0)
    run.task_dispatched(Job("t1", 0, 0), "a", 0)
    run.task_dispatched(Job("t2", 0, 0), "a", 100)
    run.task_finished(Job("t2", 0, 0), "a", 50, "SUCCEEDED")  # a skewed clock
    summary = run.summary(200)
    assert summary.agent_utilization == {"a": 1.0, "b": 0.0}
    assert summary.utilization == 0.5


def test_tasks_held_while_the_agent_has_no_capacity_are_not_busy_time() -> None:
    run = Statistics()
    run.agent_capacity("a", 1, 0)
    for task_id in ("t1", "t2"):  # one more than the capacity
        run.task_dispatched(Job(task_id, 0, 0), "a", 0)
    run.agent_capacity("a", 0, 50)  # draining or down, still holding both
    run.agent_capacity("a", 1, 100)
    for task_id in ("t1", "t2"):
        run.task_finished(Job(task_id, 0, 0), "a", 150, "SUCCEEDED")
    assert run.summary(200).agent_utilization == {"a": (50 + 50) / 150}


def test_a_new_dispatch_closes_the_previous_one_and_stale_results_do_not() -> None:
    run = Statistics()
    run.agent_capacity("a", 1, 0)
    run.agent_capacity("b", 1, 0)
    job = Job("t", 0, 0)
    run.task_dispatched(job, "a", 0)
    run.task_dispatched(job, "b", 40)  # lease ran out on a, no result reported
    run.task_finished(job, "a", 90, "SUCCEEDED")  # late result from a: a's slot was freed at 40
    run.task_finished(job, "b", 100, "SUCCEEDED")
    assert run.summary(100).agent_utilization == {"a": 0.4, "b": 0.6}


def test_a_dead_letter_frees_the_slot_of_an_open_dispatch() -> None:
    run = Statistics()
    run.agent_capacity("a", 1, 0)
    job = Job("t", 0, 0)
    run.task_dispatched(job, "a", 0)
    run.task_dead_lettered(job, DeadLetterReason.MAX_ATTEMPTS, 40)
    assert run.summary(100).agent_utilization == {"a": 0.4}


def test_agents_never_up_are_left_out_of_the_balance() -> None:
    run = Statistics()
    run.agent_capacity("a", 1, 0)
    run.agent_capacity("ghost", 0, 0)
    job = Job("t", 0, 0)
    run.task_dispatched(job, "a", 0)
    run.task_finished(job, "a", 50, "SUCCEEDED")
    summary = run.summary(100)
    assert summary.agent_utilization == {"a": 0.5}
    assert (summary.load_cv, summary.max_load_ratio, summary.utilization) == (0.0, 1.0, 0.5)


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(CoreError):
        Statistics().agent_capacity("a", -1, 0)


# --- deadlines -------------------------------------------------------------------------------

OUTCOMES = st.sampled_from(["started", "dead-lettered", "waiting"])


@settings(max_examples=80)
@given(
    st.lists(
        st.tuples(st.none() | st.integers(0, 1_000), OUTCOMES, st.integers(0, 1_000)),
        max_size=100,
    ),
    st.integers(0, 1_000),
)
def test_deadline_success_is_the_share_started_by_their_deadline(
    tasks: list[tuple[int | None, str, int]], now_ms: int
) -> None:
    run = Statistics()
    met = missed = 0
    for i, (deadline_ms, outcome, at_ms) in enumerate(tasks):
        job = Job(f"t{i}", 1, 0, deadline_ms=deadline_ms)
        run.task_received(job, 0)
        if outcome == "started":
            run.task_started(job, "a", at_ms)
        elif outcome == "dead-lettered":
            run.task_dead_lettered(job, DeadLetterReason.EXPIRED, at_ms)
        if deadline_ms is None:
            continue
        if outcome == "waiting" and deadline_ms >= now_ms:
            continue  # not decided yet
        if outcome == "started" and at_ms <= deadline_ms:
            met += 1
        else:
            missed += 1
    summary = run.summary(now_ms)
    assert (summary.deadline_met, summary.deadline_missed) == (met, missed)
    assert summary.deadline_success == (met / (met + missed) if met + missed else None)
    assert summary.dead_lettered["EXPIRED"] == sum(1 for _, o, _ in tasks if o == "dead-lettered")


def test_a_task_started_after_a_dead_letter_report_is_not_counted_again() -> None:
    run = Statistics()
    job = Job("t", 0, 0, deadline_ms=100)
    run.task_received(job, 0)
    run.task_started(job, "a", 50)
    run.task_dead_lettered(job, DeadLetterReason.MAX_ATTEMPTS, 900)
    summary = run.summary(1_000)
    assert (summary.deadline_met, summary.deadline_missed, summary.deadline_success) == (1, 0, 1.0)


# --- inversions, affinity, the JSON form ------------------------------------------------------


def test_inversions_and_affinity_hits_are_counted_per_dispatch() -> None:
    run = Statistics()
    for i, (inversion, hit) in enumerate(
        [(True, None), (False, True), (False, False), (True, True)]
    ):
        run.task_dispatched(Job(f"t{i}", 0, 0), "a", 0, inversion=inversion, affinity_hit=hit)
    summary = run.summary(10)
    assert summary.priority_inversions == 2
    assert (summary.affinity_dispatches, summary.affinity_hit_rate) == (3, 2 / 3)


def scripted_run() -> Statistics:
    run = Statistics(levels=2)
    run.agent_capacity("b", 2, 0)
    run.agent_capacity("a", 1, 0)
    for i in range(30):
        job = Job(f"t{i}", i % 2, i * 10, deadline_ms=i * 10 + 25)
        run.task_received(job, i * 10)
        run.task_dispatched(job, "ab"[i % 2], i * 10 + 3, affinity_hit=i % 3 == 0)
        run.task_started(job, "ab"[i % 2], i * 10 + 3 + i)
        run.task_finished(job, "ab"[i % 2], i * 10 + 9 + i, "SUCCEEDED" if i % 5 else "FAILED")
    run.task_dead_lettered(Job("x", 1, 0), DeadLetterReason.MALFORMED, 5)
    return run


def test_to_dict_is_json_ready_rounded_and_deterministic() -> None:
    first = scripted_run().summary(400).to_dict()
    text = json.dumps(first)
    assert text == json.dumps(scripted_run().summary(400).to_dict())
    assert json.loads(text) == first
    assert first["tasks"] == 30 and first["completed"] == 24
    assert first["finished"] == {"FAILED": 6, "SUCCEEDED": 24}
    assert first["dead_lettered"] == {reason.value: 0 for reason in DeadLetterReason} | {
        "MALFORMED": 1
    }
    per_agent, by_priority = first["agent_utilization"], first["queue_ms_by_priority"]
    assert isinstance(per_agent, dict) and list(per_agent) == ["a", "b"]
    assert isinstance(by_priority, dict) and list(by_priority) == ["p0", "p1"]
    assert first["affinity_hit_rate"] == 0.3333
    for key in ("utilization", "load_cv", "max_load_ratio", "deadline_success"):
        value = first[key]
        assert isinstance(value, float) and round(value, 4) == value


def test_bad_levels_and_priorities_are_refused() -> None:
    with pytest.raises(ConfigError):
        Statistics(levels=0)
    with pytest.raises(CoreError):
        Statistics(levels=2).task_received(Job("t", 2, 0), 0)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.integers(0, 200), st.integers(0, 10**7)), min_size=1, max_size=400
    ),
    exact_samples=st.integers(0, 50),
    percent=st.integers(1, 100),
)
def test_a_sketched_series_keeps_its_mean_exact_and_quantiles_within_the_accuracy(
    values: list[int], exact_samples: int, percent: int
) -> None:
    series = Series(exact_samples)
    for value in values:
        series.add(value)
    assert len(series) == len(values)
    assert series.exact is (len(values) <= exact_samples)
    assert series.mean() == pytest.approx(sum(values) / len(values))
    truth = nearest_rank(sorted(values), percent)
    found = series.quantile(percent)
    assert found is not None
    assert abs(found - truth) <= SKETCH_ACCURACY * truth + 0.5


def test_a_series_past_its_exact_samples_stays_small() -> None:
    values = [value % 60_000 for value in range(180_000)]
    series = Series(1_000)
    for value in values:
        series.add(value)
    assert not series.exact
    # one bucket per 1% of range: ln(60,000) / ln(1.01) is about 1,100
    assert series.stored < 1_200
    for percent in (50, 99, 100):
        truth = nearest_rank(sorted(values), percent)
        assert series.quantile(percent) == pytest.approx(truth, rel=SKETCH_ACCURACY)


def test_malformed_records_count_as_dead_letters_and_as_no_task() -> None:
    run = Statistics()
    run.intake_dead_lettered()
    run.intake_dead_lettered()
    summary = run.summary(10)
    assert summary.dead_lettered["MALFORMED"] == 2
    assert (summary.tasks, summary.dispatched, summary.deadline_missed) == (0, 0, 0)


# --- breakdowns by priority, type and tenant -------------------------------------------------

OUTCOMES = st.sampled_from(["waiting", "started", "succeeded", "failed", "dead"])
BREAKDOWN_TASKS = st.lists(
    st.tuples(
        st.integers(0, 3),  # priority
        st.integers(0, 2 * BREAKDOWN_KEYS),  # its type, of more than the breakdown keeps
        st.sampled_from(["acme", "globex", OTHER]),  # its tenant ("other" is a name too)
        st.integers(0, 5_000),  # queue time, if it starts
        OUTCOMES,
    ),
    max_size=120,
)


BreakdownTask = tuple[int, int, str, int, str]
"""Priority, type number, tenant, queue time, outcome."""


def _breakdown_run(tasks: list[BreakdownTask]) -> Summary:
    run = Statistics(levels=4)
    for i, (priority, type_number, tenant, queue_ms, outcome) in enumerate(tasks):
        job = Job(f"t{i}", priority, 0, tenant=tenant, task_type=f"type{type_number}")
        run.task_received(job, 0)
        if outcome == "dead":
            run.task_dead_lettered(job, DeadLetterReason.EXPIRED, 10)
        elif outcome != "waiting":
            run.task_dispatched(job, "a", queue_ms)
            run.task_started(job, "a", queue_ms)
            if outcome in ("succeeded", "failed"):
                status = "SUCCEEDED" if outcome == "succeeded" else "FAILED"
                run.task_finished(job, "a", queue_ms + 1, status)
    return run.summary(10_000)


def _reference(
    tasks: list[BreakdownTask], group: Callable[[int, str, str], object]
) -> dict[object, Counts]:
    """The counts of each group, counted the plain way."""
    found: dict[object, list[int]] = {}
    for priority, type_number, tenant, queue_ms, outcome in tasks:
        counts = found.setdefault(group(priority, f"type{type_number}", tenant), [0] * 5)
        started = outcome in ("started", "succeeded", "failed")
        counts[0] += 1
        counts[1] += started
        counts[2] += queue_ms if started else 0
        counts[3] += outcome == "succeeded"
        counts[4] += outcome == "dead"
    return {key: Counts(*counts) for key, counts in found.items()}


@settings(max_examples=80)
@given(BREAKDOWN_TASKS)
def test_breakdowns_count_each_group_exactly_and_keep_the_first_types_seen(
    tasks: list[BreakdownTask],
) -> None:
    summary = _breakdown_run(tasks)
    kept: list[str] = []
    for _, type_number, _, _, _ in tasks:
        name = f"type{type_number}"
        if name not in kept and len(kept) < BREAKDOWN_KEYS:
            kept.append(name)

    levels = {level: Counts() for level in range(4)}
    assert summary.by_priority == levels | _reference(tasks, lambda priority, _, __: priority)
    assert summary.by_tenant == _reference(tasks, lambda _, __, tenant: tenant)
    assert summary.by_type == _reference(tasks, lambda _, name, __: name if name in kept else OTHER)
    assert len(summary.by_type) <= BREAKDOWN_KEYS + 1
    for level, counts in summary.by_priority.items():  # the same figures as the totals
        assert counts.started == summary.queue_by_priority[level].count
        assert counts.mean_queue_ms == summary.queue_by_priority[level].mean_ms
    assert sum(c.received for c in summary.by_type.values()) == summary.tasks
    assert sum(c.completed for c in summary.by_tenant.values()) == summary.completed
    dead = sum(c.dead_lettered for c in summary.by_priority.values())
    assert dead == sum(summary.dead_lettered.values())


def test_a_breakdown_stays_bounded_whatever_producers_send() -> None:
    run = Statistics()
    for i in range(10 * BREAKDOWN_KEYS):
        run.task_received(Job(f"t{i}", 0, 0, tenant=f"tenant{i}", task_type=f"type{i}"), 0)
    summary = run.summary(1)
    assert list(summary.by_type) == [f"type{i}" for i in range(BREAKDOWN_KEYS)] + [OTHER]
    assert summary.by_type[OTHER].received == 9 * BREAKDOWN_KEYS
    assert len(summary.by_tenant) == BREAKDOWN_KEYS + 1
