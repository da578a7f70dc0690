"""The simulation loop driving the real distributor: determinism and the guarantees of a run.

Every strategy runs here, the push baselines included: no task is lost or ended twice, no
agent runs more tasks than it has slots, late binding never sends a task to a full agent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.routing.names import PUSH_STRATEGIES, STRATEGY_NAMES
from streams.core.sim import RunResult, compare, parse_scenario, report_json, simulate
from streams.core.sim.workload import generate

ROOT = Path(__file__).resolve().parents[2]
ALL = list(STRATEGY_NAMES)
COMPARED = [
    "affinity",
    "least-connections",
    "power-of-two-choices",
    "consistent-hash",
    "round-robin-push",
    "random-push",
]


def eventful(**overrides: Any) -> dict[str, Any]:
    """A small scenario where everything happens: failures, a crash and recovery, an agent
    that never comes back, deadlines, TTLs, a skill nobody has, four levels, affinity keys."""
    data: dict[str, Any] = {
        "name": "eventful",
        "seed": 11,
        "strategies": COMPARED,
        "retry_backoffs_ms": [200, 1_000],
        "arrivals": {"process": "poisson", "load": 0.9, "tasks": 600},
        "agents": [
            {"name": "fast", "count": 2, "capacity": 3, "speed": 2.0, "zone": "eu"},
            {
                "name": "flaky",
                "count": 2,
                "capacity": 2,
                "speed": 1.0,
                "zone": "us",
                "failure_probability": 0.3,
                "skills": ["gpu"],
            },
            {
                "name": "spot",
                "count": 2,
                "capacity": 1,
                "speed": 1.0,
                "crash_at_ms": 3_000,
                "recover_at_ms": 20_000,
            },
            {"name": "gone", "count": 1, "capacity": 2, "speed": 1.0, "crash_at_ms": 5_000},
        ],
        "tasks": [
            {
                "share": 0.2,
                "priority": 0,
                "type": "alert",
                "work": {"distribution": "exponential", "mean": 0.2},
                "deadline_ms": 800,
            },
            {
                "share": 0.4,
                "priority": 1,
                "type": "api",
                "work": {"distribution": "lognormal", "mean": 0.4, "sigma": 1.0},
                "tenants": ["a", "b"],
                "affinity_keys": 20,
                "affinity": "zipf",
                "zone": "eu",
            },
            {
                "share": 0.33,
                "priority": 2,
                "type": "batch",
                "work": {"distribution": "exponential", "mean": 0.8},
                "ttl_ms": 4_000,
            },
            {
                "share": 0.05,
                "priority": 3,
                "type": "render",
                "work": {"distribution": "constant", "mean": 0.5},
                "required_skills": ["gpu"],
            },
            {
                "share": 0.02,
                "priority": 3,
                "type": "quantum",
                "work": {"distribution": "constant", "mean": 0.5},
                "required_skills": ["qpu"],
            },
        ],
    }
    data.update(overrides)
    return data


def run(data: dict[str, Any], strategy: str) -> RunResult:
    scenario = parse_scenario(data)
    return simulate(scenario, strategy, generate(scenario))


def assert_sound(result: RunResult) -> None:
    """The guarantees every run keeps, whatever the strategy and the scenario."""
    tally, summary = result.tally, result.summary
    assert tally.duplicates == 0, "a task ended twice"
    assert result.accounted == result.tasks, (result.unfinished, tally.to_dict())
    assert tally.completed == summary.completed
    assert tally.dead_lettered == dict(summary.dead_lettered)
    for agent in result.agents:
        assert agent.peak_running <= agent.capacity, agent
        # With a task running for a while, one slot at least and every slot at most is busy.
        assert agent.busy_ms / agent.capacity <= agent.occupied_ms <= agent.busy_ms, agent
        assert agent.occupied_ms <= agent.up_ms, agent
    assert result.agent_busy_ms + result.agent_idle_ms == sum(a.up_ms for a in result.agents)
    if result.strategy not in PUSH_STRATEGIES:
        assert tally.overbooked == 0
        assert tally.locally_queued == 0


@pytest.mark.parametrize("strategy", ALL)
def test_every_task_ends_exactly_once_under_every_strategy(strategy: str) -> None:
    result = run(eventful(), strategy)
    assert_sound(result)
    assert result.finished
    assert result.unfinished == {
        "queued": 0,
        "in_flight": 0,
        "retry_wait": 0,
        "backlog": 0,
        "not_arrived": 0,
    }
    dead = result.tally.dead_lettered
    assert dead["NO_CAPABLE_AGENT"] > 0  # the qpu tasks
    assert result.tally.failures > 0
    assert result.tally.retried > 0
    assert result.tally.completed + result.tally.dead_total == 600


@pytest.mark.parametrize("strategy", COMPARED)
def test_what_a_crashed_agent_held_fails_over_and_completes(strategy: str) -> None:
    """Long tasks, no deadlines: the crashed agents hold work, which comes back after the
    distributor declares them down and is completed elsewhere."""
    data = eventful(
        agents=[
            {"name": "a", "count": 2, "capacity": 2, "speed": 1.0},
            {"name": "b", "count": 2, "capacity": 2, "speed": 1.0, "crash_at_ms": 5_000},
        ],
        tasks=[{"share": 1.0, "work": {"distribution": "constant", "mean": 3.0}}],
        arrivals={"process": "constant", "load": 0.5, "tasks": 40},
    )
    result = run(data, strategy)
    assert_sound(result)
    assert result.tally.requeued > 0
    assert result.tally.completed == 40


def test_the_failure_stream_is_the_same_for_every_strategy() -> None:
    """Every agent fails with the same probability, so which attempts fail is fixed by the
    seed alone: every strategy counts the same failures and the same spent attempts."""
    data = eventful()
    data["agents"] = [
        {"name": "a", "count": 3, "capacity": 2, "speed": 1.0, "failure_probability": 0.3},
        {"name": "b", "count": 2, "capacity": 1, "speed": 2.0, "failure_probability": 0.3},
    ]
    data["tasks"] = [{"share": 1.0, "work": {"distribution": "exponential", "mean": 0.3}}]
    results = [run(data, strategy) for strategy in COMPARED]
    for result in results:
        assert_sound(result)
    figures = {(r.tally.failures, r.tally.dead_lettered["MAX_ATTEMPTS"]) for r in results}
    assert len(figures) == 1
    failures, spent = figures.pop()
    assert failures > 100 and spent > 0


def test_the_same_seed_prints_the_same_json_and_another_seed_does_not() -> None:
    scenario = parse_scenario(eventful())
    first = report_json(compare(scenario))
    assert first == report_json(compare(scenario))
    assert first != report_json(compare(replace(scenario, seed=12)))


def test_the_json_does_not_depend_on_the_hash_seed_of_the_process() -> None:
    """Byte for byte across processes, so no iteration over a set or a dict of str decides."""
    code = (
        "import sys; from dataclasses import replace;"
        "from streams.core.sim import scenario_from_toml, compare, report_json;"
        "s = scenario_from_toml(open(sys.argv[1]).read());"
        "s = replace(s, arrivals=replace(s.arrivals, tasks=300));"
        "print(report_json(compare(s)))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, str(ROOT / "scenarios" / "quick.toml")],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    assert '"round-robin-push"' in outputs.pop()


@pytest.mark.parametrize("strategy", ["least-connections", "round-robin-push"])
def test_a_run_stopped_by_its_time_limit_still_accounts_for_every_task(strategy: str) -> None:
    result = run(eventful(time_limit_ms=4_000), strategy)
    assert_sound(result)
    assert not result.finished
    assert result.end_ms <= 4_000
    assert result.unfinished["not_arrived"] > 0
    assert sum(result.unfinished.values()) > result.unfinished["not_arrived"]


@pytest.mark.parametrize("strategy", ["affinity", "power-of-two-choices", "random-push"])
def test_overload_pauses_intake_and_still_loses_nothing(strategy: str) -> None:
    data = eventful(
        arrivals={"process": "bursts", "burst_size": 10, "load": 1.5, "tasks": 800},
        scheduler={"max_held": 40},
    )
    result = run(data, strategy)
    assert_sound(result)
    assert result.finished
    if strategy not in PUSH_STRATEGIES:
        assert result.tally.intake_pauses > 0


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    strategy=st.sampled_from(ALL),
    capacity=st.integers(1, 3),
    count=st.integers(1, 4),
    load=st.floats(0.2, 1.5),
    failure=st.floats(0.0, 0.5),
    crash_at_ms=st.one_of(st.none(), st.integers(0, 5_000)),
    down_ms=st.integers(1, 30_000),
)
def test_any_small_scenario_keeps_the_guarantees(
    seed: int,
    strategy: str,
    capacity: int,
    count: int,
    load: float,
    failure: float,
    crash_at_ms: int | None,
    down_ms: int,
) -> None:
    crashing: dict[str, Any] = {"name": "c", "count": 1, "capacity": capacity, "speed": 1.0}
    if crash_at_ms is not None:
        crashing.update(crash_at_ms=crash_at_ms, recover_at_ms=crash_at_ms + down_ms)
    data = eventful(
        seed=seed,
        arrivals={"load": load, "tasks": 150},
        agents=[
            {
                "name": "a",
                "count": count,
                "capacity": capacity,
                "speed": 1.0,
                "failure_probability": failure,
                "skills": ["gpu"],
            },
            crashing,
        ],
    )
    result = run(data, strategy)
    assert_sound(result)
    assert result.finished


def test_an_agent_that_never_recovers_gets_no_work_after_it_is_declared_down() -> None:
    result = run(eventful(), "least-connections")
    gone = next(agent for agent in result.agents if agent.agent_id == "gone-001")
    # Crashed at 5 s and never back: it ran at most until then.
    assert gone.available_ms == gone.capacity * 5_000
    assert gone.busy_ms <= gone.available_ms


def test_a_scenario_whose_duration_holds_no_arrival_reports_zeros() -> None:
    data = eventful(arrivals={"rate_per_s": 0.001, "duration_ms": 10})
    report = compare(parse_scenario(data), ["affinity", "random-push"])
    assert report.tasks == 0
    for result in report.results:
        assert (result.tasks, result.accounted, result.summary.mean_queue_ms) == (0, 0, None)


def test_packing_keeps_fewer_agents_busy_than_spreading_at_a_low_load() -> None:
    """Ten equal agents at 20% of their capacity: least-connections spreads the work over all
    of them, packing runs it on a few and leaves the others idle, with waits still near 0."""
    data = eventful(
        agents=[{"name": "a", "count": 10, "capacity": 4, "speed": 1.0}],
        tasks=[{"share": 1.0, "work": {"distribution": "exponential", "mean": 0.5}}],
        arrivals={"process": "poisson", "load": 0.2, "tasks": 2_000},
    )
    spread, packed = (run(data, strategy) for strategy in ("least-connections", "packing"))
    for result in (spread, packed):
        assert_sound(result)
        assert result.tally.completed == 2_000
    assert spread.agents_unused == 0
    assert packed.agents_unused > 0
    assert packed.agent_busy_ms < spread.agent_busy_ms / 2
    assert packed.agent_idle_ms > spread.agent_idle_ms
    assert (packed.summary.mean_queue_ms or 0.0) < 10
