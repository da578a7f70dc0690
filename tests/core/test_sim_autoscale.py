"""Arrivals in phases and an autoscaler following the signal in the simulator."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.sim import Arrivals, compare, parse_scenario
from streams.core.sim.spec import RatePhase
from streams.core.sim.workload import arrival_times
from streams.errors import ConfigError


def peak(**top: object) -> dict[str, Any]:
    """A small load peak: 6 agents of 2 slots (12 work units/s) are the fixed fleet; the load
    rises from 15% to 85% of it and falls back."""
    load = [(60, 0.15), (20, 0.4), (20, 0.6), (60, 0.85), (20, 0.5), (100, 0.15)]
    return {
        "name": "small peak",
        "seed": 3,
        "slo": "p99_queue<3s",
        "arrivals": {
            "process": "poisson",
            "phases": [{"duration_ms": s * 1_000, "load": x} for s, x in load],
        },
        "agents": [{"name": "w", "count": 6, "capacity": 2, "speed": 1.0}],
        "tasks": [
            {
                "share": 1.0,
                "type": "work",
                "priority": 1,
                "work": {"distribution": "exponential", "mean": 0.5},
            }
        ],
        "autoscale": {
            "group": "w",
            "initial": 1,
            "startup_ms": 5_000,
            "interval_ms": 5_000,
            "min_agents": 1,
            "max_agents": 6,
            "headroom": 0.3,
            "drain_s": 20.0,
            "window_ms": 20_000,
            "cooldown_ms": 40_000,
        },
        "variants": [
            {"name": "fixed", "dispatcher_shards": 1},
            {"name": "autoscaled", "dispatcher_shards": 1, "autoscale": True},
        ],
        **top,
    }


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1_000, 30_000), st.floats(1, 200)), min_size=1, max_size=5),
    st.sampled_from(["poisson", "constant"]),
)
def test_each_phase_arrives_at_its_rate_within_its_span(
    phases: list[tuple[int, float]], process: str
) -> None:
    spec = Arrivals(
        process=process,
        rate_per_s=1.0,
        duration_ms=sum(d for d, _ in phases),
        phases=tuple(RatePhase(d, r) for d, r in phases),
    )
    times = list(arrival_times(spec, random.Random(1)))
    assert times == sorted(times)
    start = 0
    for duration_ms, rate in phases:
        inside = sum(1 for t in times if start <= t < start + duration_ms)
        expected = rate * duration_ms / 1000
        # Poisson: within 5 standard deviations; constant: within one arrival.
        slack = 5 * expected**0.5 + 2 if process == "poisson" else 2
        assert abs(inside - expected) <= slack
        start += duration_ms
    assert all(t < start for t in times)


def test_phases_take_a_load_or_a_rate_and_exclude_a_single_rate() -> None:
    scenario = parse_scenario(peak())
    phases = scenario.arrivals.phases
    assert [p.duration_ms for p in phases] == [60_000, 20_000, 20_000, 60_000, 20_000, 100_000]
    assert phases[3].rate_per_s == pytest.approx(0.85 * 12 / 0.5)
    assert scenario.arrivals.duration_ms == 280_000
    with pytest.raises(ConfigError, match=r"arrivals.tasks: not with phases"):
        parse_scenario(peak(arrivals={"phases": [{"duration_ms": 1, "load": 1}], "tasks": 5}))
    with pytest.raises(ConfigError, match=r"arrivals.phases\[0\].duration_ms: required"):
        parse_scenario(peak(arrivals={"phases": [{"load": 1}]}))


def test_an_autoscale_table_names_a_group_and_a_variant_needs_one() -> None:
    data = peak()
    data["autoscale"] = {**data["autoscale"], "group": "gpu"}
    with pytest.raises(ConfigError, match=r"autoscale\.group: no agent group is named 'gpu'"):
        parse_scenario(data)
    without = peak()
    del without["autoscale"]
    with pytest.raises(ConfigError, match=r"needs an \[autoscale\] table"):
        parse_scenario(without)
    with pytest.raises(ConfigError, match="slo"):
        parse_scenario(peak(slo="p99_queue<"))


def test_the_autoscaler_meets_the_slo_with_fewer_agent_seconds_than_the_fixed_fleet() -> None:
    report = compare(parse_scenario(peak()))
    fixed, scaled = report.results
    assert (fixed.variant, scaled.variant) == ("fixed", "autoscaled")
    for result in (fixed, scaled):
        assert result.finished and result.tally.completed == result.tasks  # nothing lost
        assert result.slo_met is True
    assert not fixed.autoscaled and scaled.autoscaled
    assert scaled.agent_up_ms < 0.8 * fixed.agent_up_ms
    # It followed the peak up and back down.
    assert scaled.tally.scaled_up >= 3 and scaled.tally.scaled_down >= 3
    assert fixed.tally.scaled_up == fixed.tally.scaled_down == 0
    figures = scaled.to_dict()
    assert figures["autoscaled"] is True and figures["slo_met"] is True
    assert figures["agent_up_s"] == round(scaled.agent_up_ms / 1000, 1)


def test_a_drained_agent_stops_and_is_paid_only_while_up() -> None:
    report = compare(parse_scenario(peak()))
    scaled = report.results[1]
    end_s = scaled.end_ms / 1000
    up = {agent.agent_id: agent.up_ms / 1000 for agent in scaled.agents}
    assert len(up) == 1 + scaled.tally.scaled_up
    assert all(0 <= seconds <= end_s for seconds in up.values())
    # the first agent ran from the start to the end (min_agents keeps one)
    assert up["w-001"] == pytest.approx(end_s)
