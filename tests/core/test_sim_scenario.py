"""Scenario files: what parses, what is rejected (naming the field), the shipped scenarios."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.sim import parse_scenario, scenario_from_toml
from streams.errors import ConfigError

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def minimal() -> dict[str, Any]:
    return {
        "arrivals": {"rate_per_s": 10.0, "tasks": 100},
        "agents": [{"name": "a", "count": 2, "capacity": 2, "speed": 1.0}],
        "tasks": [
            {"share": 0.5, "work": {"distribution": "exponential", "mean": 0.1}},
            {"share": 0.5, "priority": 3, "work": {"distribution": "constant", "mean": 0.2}},
        ],
    }


def with_change(path: tuple[object, ...], value: object) -> dict[str, Any]:
    """``minimal()`` with the item at ``path`` set to ``value`` (``...``: deleted)."""
    data = minimal()
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


def test_a_minimal_scenario_takes_the_defaults() -> None:
    scenario = parse_scenario(minimal())
    assert scenario.name == "scenario"
    assert scenario.seed == 0
    assert scenario.strategies == ("affinity",)
    assert scenario.arrivals.process == "poisson"
    assert scenario.tasks[0].tenants == ("default",)
    assert scenario.health.heartbeat_interval_ms == 1_000
    assert scenario.time_limit_ms is None
    assert scenario.limit_ms(1_000) == 10_000 + 3_600_000


def test_an_agent_group_may_have_prefetch() -> None:
    assert parse_scenario(minimal()).agents[0].prefetch == 0
    scenario = parse_scenario(with_change(("agents", 0, "prefetch"), 2))
    assert scenario.agents[0].prefetch == 2
    with pytest.raises(ConfigError, match=r"agents\[0\]\.prefetch"):
        parse_scenario(with_change(("agents", 0, "prefetch"), -1))


def test_load_sets_the_rate_from_capacity_and_mean_work() -> None:
    data = with_change(("arrivals", "rate_per_s"), ...)
    data["arrivals"]["load"] = 0.5
    scenario = parse_scenario(data)
    # 2 agents x 2 slots x speed 1 = 4 units/s; mean work 0.15 units -> 26.67 tasks/s at 100%.
    assert scenario.arrivals.rate_per_s == pytest.approx(0.5 * 4 / 0.15)
    assert scenario.offered_load == pytest.approx(0.5)


BAD: list[tuple[tuple[object, ...], object, str]] = [
    (("surprise",), 1, "surprise: unknown key"),
    (("arrivals", "rate"), 1.0, "arrivals.rate: unknown key"),
    (("agents", 0, "sped"), 1.0, "agents[0].sped: unknown key"),
    (("tasks", 1, "work", "sigma2"), 1.0, "tasks[1].work.sigma2: unknown key"),
    (("arrivals", "rate_per_s"), -1.0, "arrivals.rate_per_s"),
    (("arrivals", "rate_per_s"), 0, "arrivals.rate_per_s: must be > 0"),
    (("arrivals", "rate_per_s"), math.inf, "arrivals.rate_per_s"),
    (("arrivals", "rate_per_s"), "fast", "arrivals.rate_per_s: expected a number"),
    (("arrivals", "rate_per_s"), ..., "arrivals.rate_per_s: give exactly one of rate_per_s"),
    (("arrivals", "load"), 0.5, "arrivals.rate_per_s: give exactly one of rate_per_s"),
    (("arrivals", "tasks"), ..., "arrivals.tasks: give exactly one of tasks and duration_ms"),
    (("arrivals", "duration_ms"), 10, "arrivals.tasks: give exactly one"),
    (("arrivals", "tasks"), 0, "arrivals.tasks: must be >= 1"),
    (("arrivals", "process"), "weibull", "arrivals.process: unknown value 'weibull'"),
    (("arrivals", "burst_size"), 5, "arrivals.burst_size: only applies to process = 'bursts'"),
    (("agents", 0, "count"), 0, "agents[0].count: must be >= 1"),
    (("agents", 0, "capacity"), -2, "agents[0].capacity: must be >= 1"),
    (("agents", 0, "capacity"), 1.5, "agents[0].capacity: expected an integer"),
    (("agents", 0, "speed"), -1.0, "agents[0].speed"),
    (("agents", 0, "failure_probability"), 1.0, "agents[0].failure_probability"),
    (("agents", 0, "skills"), "gpu", "agents[0].skills: expected a list"),
    (("agents", 0, "recover_at_ms"), 10, "agents[0].recover_at_ms: needs crash_at_ms"),
    (("agents", 0, "name"), ..., "agents[0].name: required"),
    (("agents",), [], "agents: expected a non-empty array"),
    (("tasks", 0, "share"), 0.6, "tasks: the shares must sum to 1, got 1.1"),
    (("tasks", 0, "share"), -0.5, "tasks[0].share"),
    (("tasks", 0, "share"), ..., "tasks[0].share: required"),
    (("tasks", 0, "priority"), 4, "tasks[0].priority: must be < scheduler.levels (4)"),
    (("tasks", 0, "work", "distribution"), "pareto", "tasks[0].work.distribution: unknown"),
    (("tasks", 0, "work", "mean"), 0, "tasks[0].work.mean: must be > 0"),
    (("tasks", 0, "work"), ..., "tasks[0].work.distribution: required"),
    (("tasks", 0, "affinity"), "normal", "tasks[0].affinity: unknown value 'normal'"),
    (("tasks", 0, "zipf_exponent"), 0, "tasks[0].zipf_exponent: must be > 0"),
    (("tasks", 0, "deadline_ms"), 0, "tasks[0].deadline_ms: must be >= 1"),
    (("tasks", 0, "max_attempts"), 0, "tasks[0].max_attempts: must be >= 1"),
    (("strategies",), ["fastest"], "strategies[0]: unknown routing strategy 'fastest'"),
    (("strategies",), ["random", "random"], "strategies: names a strategy twice"),
    (("seed",), "x", "seed: expected an integer"),
    (("seed",), True, "seed: expected an integer"),
    (("retry_backoffs_ms",), [], "retry_backoffs_ms: expected a non-empty list"),
    (("retry_backoffs_ms",), [10, -1], "retry_backoffs_ms: expected integers > 0"),
    (("health",), {"heartbeat_interval_ms": 5_000}, "health: suspect_after_ms"),
    (("health",), {"beat_ms": 5}, "health.beat_ms: unknown key"),
    (("scheduler",), {"levels": 2}, "tasks[1].priority: must be < scheduler.levels (2)"),
    (("scheduler",), {"tenant_weights": {"a": 0}}, "scheduler.tenant_weights.a: must be > 0"),
    (("routing",), {"hash_load_factor": 0.5}, "routing.hash_load_factor"),
    (("routing",), {"zone_strict": 1}, "routing.zone_strict: expected true or false"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD)
def test_a_bad_scenario_raises_config_error_naming_the_field(
    path: tuple[object, ...], value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_scenario(with_change(path, value))
    assert message in str(raised.value)


def test_two_agent_groups_may_not_share_a_name() -> None:
    data = minimal()
    data["agents"].append(copy.deepcopy(data["agents"][0]))
    with pytest.raises(ConfigError, match="agents: group names must be unique"):
        parse_scenario(data)


def test_invalid_toml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        scenario_from_toml("name = ")


@given(
    shares=st.lists(st.integers(1, 1000), min_size=1, max_size=6),
    drift=st.floats(-1e-3, 1e-3),
)
def test_shares_must_sum_to_one_within_a_millionth(shares: list[int], drift: float) -> None:
    total = sum(shares)
    data = minimal()
    work = {"distribution": "constant", "mean": 1.0}
    data["tasks"] = [{"share": s / total, "work": work} for s in shares]
    data["tasks"][0]["share"] += drift
    if abs(sum(t["share"] for t in data["tasks"]) - 1) <= 1e-6 and data["tasks"][0]["share"] > 0:
        assert len(parse_scenario(data).tasks) == len(shares)
    else:
        with pytest.raises(ConfigError, match="share"):
            parse_scenario(data)


@given(
    load=st.floats(0.01, 3.0),
    capacity=st.integers(1, 16),
    count=st.integers(1, 50),
    speed=st.floats(0.1, 10.0),
    mean=st.floats(0.01, 10.0),
)
def test_the_offered_load_is_the_load_asked_for(
    load: float, capacity: int, count: int, speed: float, mean: float
) -> None:
    data = minimal()
    data["arrivals"] = {"load": load, "tasks": 10}
    data["agents"] = [{"name": "a", "count": count, "capacity": capacity, "speed": speed}]
    data["tasks"] = [{"share": 1.0, "work": {"distribution": "exponential", "mean": mean}}]
    scenario = parse_scenario(data)
    assert scenario.offered_load == pytest.approx(load)
    assert scenario.arrivals.rate_per_s == pytest.approx(load * count * capacity * speed / mean)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_parses(path: Path) -> None:
    scenario = scenario_from_toml(path.read_text(encoding="utf-8"))
    assert scenario.name
    assert scenario.strategies


def test_the_shipped_scenarios_are_the_ones_promised() -> None:
    names = {path.name for path in SCENARIOS.glob("*.toml")}
    assert {"reference.toml", "mm1.toml", "erlang_c.toml", "overload.toml", "quick.toml"} <= names


def test_the_reference_scenario_is_what_the_issue_asks_for() -> None:
    scenario = scenario_from_toml((SCENARIOS / "reference.toml").read_text(encoding="utf-8"))
    agents = sum(group.count for group in scenario.agents)
    assert scenario.arrivals.tasks == 45_000
    assert 24 <= agents <= 40
    assert len({(g.speed, g.capacity) for g in scenario.agents}) >= 3
    assert len({g.zone for g in scenario.agents}) == 2
    assert sum(g.count for g in scenario.agents if g.failure_probability > 0) >= 2
    skilled = {skill for g in scenario.agents for skill in g.skills}
    assert any(task.required_skills and task.required_skills <= skilled for task in scenario.tasks)
    assert {task.priority for task in scenario.tasks} == {0, 1, 2, 3}
    assert len({t for task in scenario.tasks for t in task.tenants}) >= 3
    assert any(task.deadline_ms for task in scenario.tasks)
    assert any(task.affinity == "zipf" and task.affinity_keys for task in scenario.tasks)
    assert 0.85 <= scenario.offered_load <= 0.90
    assert scenario.strategies == (
        "affinity",
        "least-connections",
        "power-of-two-choices",
        "consistent-hash",
        "round-robin-push",
        "random-push",
    )


def test_the_overload_scenario_offers_120_percent() -> None:
    scenario = scenario_from_toml((SCENARIOS / "overload.toml").read_text(encoding="utf-8"))
    assert scenario.offered_load == pytest.approx(1.2)
