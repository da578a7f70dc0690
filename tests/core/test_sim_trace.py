"""The engine's additions for replaying a live run: prefetch, poison tasks, and the trace.

A late-binding run with prefetch queues at the agents but never beyond their prefetch; a
poison task ends FAILED in the dead letters after one run; the trace records every dispatch,
run, dead letter and crash of a run consistently with the run's own counters, and keeping it
changes nothing in the run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from streams.core.actions import ResultStatus
from streams.core.model import DeadLetterReason
from streams.core.sim import Arrival, RunResult, Trace, parse_scenario, report_dict, simulate
from streams.core.sim.report import Report
from streams.core.sim.workload import generate
from streams.errors import CoreError

POISON = {"t7", "t70", "t170"}


def scenario_data(**overrides: Any) -> dict[str, Any]:
    """Busy agents with prefetch, a flaky one, one that crashes for good, four levels."""
    data: dict[str, Any] = {
        "seed": 5,
        "retry_backoffs_ms": [100, 500],
        "health": {"heartbeat_interval_ms": 200, "suspect_after_ms": 600, "down_after_ms": 1_200},
        "arrivals": {"process": "poisson", "load": 0.95, "tasks": 400},
        "agents": [
            {"name": "fast", "count": 2, "capacity": 4, "speed": 2.0, "prefetch": 1},
            {
                "name": "flaky",
                "count": 1,
                "capacity": 3,
                "speed": 1.0,
                "prefetch": 2,
                "failure_probability": 0.2,
            },
            {"name": "spot", "count": 1, "capacity": 2, "speed": 1.0, "crash_at_ms": 3_000},
        ],
        "tasks": [
            {
                "share": 0.3,
                "priority": 0,
                "work": {"distribution": "exponential", "mean": 0.3},
                "deadline_ms": 2_000,
            },
            {"share": 0.4, "priority": 2, "work": {"distribution": "exponential", "mean": 0.5}},
            {"share": 0.3, "priority": 3, "work": {"distribution": "constant", "mean": 0.8}},
        ],
    }
    data.update(overrides)
    return data


def poisoned(arrivals: tuple[Arrival, ...]) -> tuple[Arrival, ...]:
    return tuple(replace(a, fatal=a.job.task_id in POISON) for a in arrivals)


def run(strategy: str = "affinity", trace: Trace | None = None) -> RunResult:
    scenario = parse_scenario(scenario_data())
    return simulate(scenario, strategy, poisoned(generate(scenario)), trace)


@pytest.mark.parametrize("strategy", ["affinity", "least-connections", "power-of-two-choices"])
def test_late_binding_with_prefetch_queues_at_agents_but_never_beyond_their_prefetch(
    strategy: str,
) -> None:
    result = run(strategy)
    assert result.finished and result.accounted == result.tasks
    assert result.tally.duplicates == 0
    assert result.tally.overbooked == 0
    assert result.tally.locally_queued > 0  # the prefetch was used
    for agent in result.agents:
        assert agent.peak_running <= agent.capacity


def test_a_poison_task_is_dead_lettered_failed_after_one_run() -> None:
    trace = Trace()
    result = run(trace=trace)
    assert result.tally.dead_lettered["FAILED"] == len(POISON)
    failed = {d.job.task_id for d in trace.dead_letters if d.reason is DeadLetterReason.FAILED}
    assert failed == POISON
    for task_id in POISON:
        runs = [r for r in trace.runs if r.job.task_id == task_id]
        assert [r.status for r in runs] == [ResultStatus.FAILED]


def test_the_trace_agrees_with_the_run() -> None:
    trace = Trace()
    result = run(trace=trace)
    succeeded = [r for r in trace.runs if r.status is ResultStatus.SUCCEEDED]
    assert len(succeeded) == result.tally.completed
    assert len({r.job.task_id for r in succeeded}) == len(succeeded)
    assert len(trace.dead_letters) == result.tally.dead_total
    assert sum(r.status is ResultStatus.RETRYABLE for r in trace.runs) == result.tally.failures
    assert len(trace.dispatches) == result.summary.dispatched
    assert trace.crashes == {"spot-001": 3_000}
    assert trace.recoveries == {}
    dispatched = {(d.agent_id, d.job.task_id, d.job.attempt): d.at_ms for d in trace.dispatches}
    for each in trace.runs:
        at_ms = dispatched[(each.agent_id, each.job.task_id, each.job.attempt)]
        assert at_ms <= each.started_ms <= each.finished_ms
        assert each.job.submitted_ms <= each.started_ms
    assert all(r.finished_ms <= 3_000 for r in trace.runs if r.agent_id == "spot-001")


def test_a_group_may_name_its_agents_and_the_names_must_be_unique() -> None:
    data = scenario_data()
    data["agents"][0]["count"] = 1
    scenario = parse_scenario(data)
    named = replace(scenario.agents[0], ids=("gpu-7",))
    result = simulate(replace(scenario, agents=(named, *scenario.agents[1:])), "affinity", ())
    assert [agent.agent_id for agent in result.agents] == ["gpu-7", "flaky-001", "spot-001"]
    for ids in (("flaky-001",), ("a", "b")):
        clash = replace(scenario, agents=(replace(named, ids=ids), *scenario.agents[1:]))
        with pytest.raises(CoreError, match="ids"):
            simulate(clash, "affinity", ())


def test_keeping_a_trace_changes_nothing_in_the_run() -> None:
    scenario = parse_scenario(scenario_data())
    without = Report(scenario, 400, (run(),))
    with_trace = Report(scenario, 400, (run(trace=Trace()),))
    assert report_dict(without) == report_dict(with_trace)
