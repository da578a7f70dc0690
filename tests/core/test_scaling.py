"""The autoscaling signal: Little's law with a drain target and headroom, pools, hysteresis."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.model import AgentInfo, AgentState, DeadLetterReason, Job
from streams.core.scaling import Autoscaler, ScalingConfig, desired_agents, pool_name
from streams.core.stats import ANY_NEED, Demand, Need, Statistics
from streams.errors import ConfigError

CONFIG = ScalingConfig(headroom=0.2, drain_s=60, window_ms=10_000, cooldown_ms=30_000)
GPU: Need = (frozenset({"gpu"}), None)


def agent(agent_id: str, capacity: int = 2, **kwargs: object) -> AgentInfo:
    return AgentInfo(agent_id, capacity, **kwargs)  # type: ignore[arg-type]


def test_littles_law_with_headroom_and_drain() -> None:
    # 10 tasks/s of 1 s each keep 10 slots busy; 20% headroom makes 12: six agents of 2.
    figures = {"run_ms": 1_000.0, "in_flight": 0, "slots_per_agent": 2, "config": CONFIG}
    assert desired_agents(rate_per_s=10, backlog=0, **figures) == 6  # type: ignore[arg-type]
    # 600 waiting, gone in 60 s, is 10 more tasks/s: twice the slots.
    assert desired_agents(rate_per_s=10, backlog=600, **figures) == 12  # type: ignore[arg-type]
    # What runs now is never given up: 9 in flight with no arrivals measured yet.
    assert desired_agents(rate_per_s=0, backlog=0, **{**figures, "in_flight": 9}) == 6  # type: ignore[arg-type]
    assert desired_agents(rate_per_s=0, backlog=0, **figures) == 0  # type: ignore[arg-type]


@given(
    st.floats(0, 1_000),
    st.floats(1, 60_000),
    st.floats(0, 100_000),
    st.integers(0, 500),
    st.integers(1, 64),
    st.floats(0, 1),
)
def test_enough_slots_for_the_arrivals_and_the_backlog(
    rate: float, run_ms: float, backlog: float, in_flight: int, slots: int, headroom: float
) -> None:
    config = ScalingConfig(headroom=headroom, drain_s=30)
    agents = desired_agents(
        rate_per_s=rate,
        run_ms=run_ms,
        backlog=backlog,
        in_flight=in_flight,
        slots_per_agent=slots,
        config=config,
    )
    needed = max(rate * run_ms / 1000, in_flight) + backlog * run_ms / 1000 / 30
    # Enough: the agents' slots cover the work with its headroom ...
    assert agents * slots >= needed * (1 + headroom) - 1e-6 * max(1.0, needed)
    # ... and no more than one agent beyond that.
    assert agents == 0 or (agents - 1) * slots < needed * (1 + headroom) + 1e-6
    more = desired_agents(
        rate_per_s=rate * 2,
        run_ms=run_ms,
        backlog=backlog + 1,
        in_flight=in_flight,
        slots_per_agent=slots,
        config=config,
    )
    assert more >= agents


def observe_backlog(scaler: Autoscaler, now_ms: int, waiting: int) -> int:
    """One observation of a pool of one agent (2 slots, 1 s runs) with ``waiting`` tasks."""
    fleet = [agent("a", 2, ewma_run_ms=1_000.0)]
    demand = {ANY_NEED: Demand(received=0, waiting=waiting)}
    return scaler.observe(now_ms, fleet, demand)["default"].desired


@given(
    st.lists(st.tuples(st.integers(1, 20_000), st.integers(0, 2_000)), min_size=1, max_size=40),
    st.integers(0, 3),
    st.one_of(st.none(), st.integers(3, 30)),
)
def test_up_at_once_down_after_the_cooldown_within_bounds(
    steps: list[tuple[int, int]], low: int, high: int | None
) -> None:
    config = ScalingConfig(
        headroom=0.0, drain_s=10, cooldown_ms=30_000, min_agents=low, max_agents=high
    )
    scaler = Autoscaler(config)
    history: list[tuple[int, int]] = []
    now_ms = 0
    for gap_ms, waiting in steps:
        now_ms += gap_ms
        desired = observe_backlog(scaler, now_ms, waiting)
        raw = math.ceil(waiting * 1.0 / 10 / 2)  # waiting * run_s / drain_s over 2 slots
        history.append((now_ms, raw))
        recent = max(r for t, r in history if t >= now_ms - 30_000)
        expected = max(recent, low) if high is None else min(max(recent, low), high)
        assert desired == expected


def test_the_rate_is_measured_over_the_window() -> None:
    scaler = Autoscaler(ScalingConfig(headroom=0.0, window_ms=10_000, cooldown_ms=0))
    fleet = [agent("a", 4, ewma_run_ms=500.0)]
    for second in range(0, 31):
        received = 40 * second  # 40 tasks/s
        signal = scaler.observe(
            second * 1_000, fleet, {ANY_NEED: Demand(received, 0)}, lambda _: 4
        )["default"]
    assert signal.rate_per_s == pytest.approx(40)
    assert signal.desired == 5  # 40/s * 0.5 s = 20 slots: five agents of 4
    assert signal.to_dict()["inputs"] == {
        "rate_per_s": 40.0,
        "run_ms": 500.0,
        "backlog": 0.0,
        "in_flight": 0,
        "slots_per_agent": 4.0,
    }


def test_pools_by_skills_and_zone_and_a_pool_from_zero() -> None:
    fleet = [
        agent("eu1", 2, zone="eu", ewma_run_ms=1_000.0),
        agent("us1", 2, zone="us", ewma_run_ms=1_000.0),
        agent("us2", 2, zone="us", ewma_run_ms=1_000.0),
        agent("down", 8, zone="us", state=AgentState.DOWN),
    ]
    demand = {
        ANY_NEED: Demand(0, 300),  # anywhere: split 1/3 eu, 2/3 us (by slots)
        (frozenset(), "eu"): Demand(0, 60),  # prefers eu: eu only
        GPU: Demand(0, 120),  # no agent has gpu: a pool from zero
    }
    signals = Autoscaler(ScalingConfig(headroom=0, drain_s=10, cooldown_ms=0)).observe(
        0, fleet, demand
    )
    assert sorted(signals) == ["default@eu", "default@us", "gpu"]
    assert signals["default@eu"].backlog == pytest.approx(100 + 60)
    assert signals["default@us"].backlog == pytest.approx(200)
    assert signals["default@us"].current == 2
    assert signals["gpu"].current == 0
    assert signals["gpu"].desired == 12  # 120 * 1 s / 10 s at one slot each (default_slots)
    assert signals["default@eu"].desired == 8  # 160 * 1 s / 10 s over 2 slots
    assert pool_name(frozenset({"ssd", "gpu"}), "eu") == "gpu+ssd@eu"


def test_a_pool_that_asks_for_nothing_and_has_no_agent_goes_away() -> None:
    scaler = Autoscaler(ScalingConfig(cooldown_ms=0))
    assert "gpu" in scaler.observe(0, [], {GPU: Demand(5, 5)})
    assert "gpu" not in scaler.observe(1_000, [], {GPU: Demand(5, 0)})


def test_bad_settings_are_one_error() -> None:
    with pytest.raises(ConfigError, match=r"headroom.*drain_s"):
        ScalingConfig(headroom=-1, drain_s=0)
    with pytest.raises(ConfigError, match="min_agents"):
        ScalingConfig(min_agents=3, max_agents=2)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["arrive", "start", "dead", "withdraw"]),
            st.integers(0, 12),
            st.sampled_from([frozenset(), frozenset({"gpu"}), frozenset({"a", "b"})]),
            st.sampled_from([None, "eu"]),
        ),
        max_size=80,
    )
)
def test_demand_counts_what_waits_per_need(
    events: list[tuple[str, int, frozenset[str], str | None]],
) -> None:
    stats = Statistics()
    waiting: dict[str, Need] = {}
    received: dict[Need, int] = {}
    for now_ms, (kind, number, skills, zone) in enumerate(events):
        task_id = f"t{number}"
        job = Job(task_id, 0, now_ms, required_skills=skills, zone=zone)
        if kind == "arrive":
            stats.task_received(job, now_ms)
            if task_id not in waiting:
                waiting[task_id] = (skills, zone)
                received[(skills, zone)] = received.get((skills, zone), 0) + 1
            continue
        if task_id in waiting:  # the driver reports the task it knows
            skills, zone = waiting.pop(task_id)
            job = Job(task_id, 0, now_ms, required_skills=skills, zone=zone)
        if kind == "start":
            stats.task_started(job, "a", now_ms)
        elif kind == "dead":
            stats.task_dead_lettered(job, DeadLetterReason.FAILED, now_ms)
        else:
            stats.task_withdrawn(task_id, now_ms)
    demand = stats.demand()
    for need, count in received.items():
        left = sum(1 for n in waiting.values() if n == need)
        assert demand[need] == Demand(count, left)
