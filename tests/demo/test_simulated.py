"""The demo's plan through the simulator, and the live-against-simulated gap (pure: no broker).

The conversion must keep the workload and the fleet: the same tasks at the same times with the
same priorities, tenants, deadlines, skills, keys, work and poison, on the same agents with the
live dispatcher's settings and prefetch. The figures are only checked to be there and to add
up, never for their values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.examples import parse_payload
from streams.settings import Settings, load_settings
from streams.wire import task_to_job
from streams.worker import FatalError
from taskd_lab.demo import gap
from taskd_lab.demo.fleet import Timings
from taskd_lab.demo.run import Plan
from taskd_lab.demo.simulated import dispatcher_config, simulate_plan, simulated_plan
from taskd_lab.demo.workload import DEMO_FLEET, KILLED, reference_workload

TASKS = 400
FIGURE_KEYS = {
    "tasks",
    "completed",
    "dead_lettered",
    "dead_by_reason",
    "unsettled",
    "queue_ms",
    "queue_ms_by_priority",
    "utilization",
    "deadline_success",
    "inversions",
    "started",
    "wall_ms",
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def plan() -> Plan:
    workload = reference_workload(TASKS, seed=7)
    return Plan("affinity", workload, DEMO_FLEET, Path("unused"), killed=KILLED)


@pytest.fixture(scope="module")
def simulated(plan: Plan, settings: Settings) -> dict[str, Any]:
    return simulate_plan(plan, settings)


def test_the_simulated_tasks_are_the_submitted_ones_at_their_arrival_times(
    plan: Plan, settings: Settings
) -> None:
    sim = simulated_plan(plan, settings)
    workload = plan.workload
    assert len(sim.arrivals) == len(sim.tasks) == len(workload.arrivals) == TASKS
    for index, arrival in enumerate(sim.arrivals):
        task = workload.task(index, workload.at_ms(index))
        assert arrival.at_ms == workload.at_ms(index) == arrival.job.submitted_ms
        assert arrival.job == task_to_job(task)  # priority, tenant, deadline, TTL, skills, key
        assert arrival.job.priority == workload.arrivals[index].job.priority
        assert arrival.job.affinity_key == workload.arrivals[index].job.affinity_key
        work_ms, failure = parse_payload(task.payload)
        assert arrival.work == pytest.approx(work_ms / 1000)
        assert arrival.fatal == (failure is FatalError)
        assert sim.tasks[task.task_id] == task
    assert [a.at_ms for a in sim.arrivals] == sorted(a.at_ms for a in sim.arrivals)


def test_the_simulated_fleet_is_the_live_one_with_the_dispatchers_prefetch(
    plan: Plan, settings: Settings
) -> None:
    sim = simulated_plan(plan, settings)
    config = dispatcher_config("affinity", Timings())
    groups = {group.name: group for group in sim.scenario.agents}
    assert list(groups) == [spec.agent_id for spec in DEMO_FLEET]
    for spec in DEMO_FLEET:
        group = groups[spec.agent_id]
        assert group.agent_ids() == (spec.agent_id,)  # routing hashes keys onto agent ids
        assert (group.count, group.capacity, group.speed) == (1, spec.capacity, spec.speed)
        assert (group.skills, group.zone) == (frozenset(spec.skills), spec.zone)
        assert group.failure_probability == spec.fail_rate
        assert group.weight == spec.work_rate
        assert group.capacity + group.prefetch == config.slots(spec.capacity)
        killed = spec.agent_id == KILLED
        assert (group.crash_at_ms is not None) == killed
        assert group.recover_at_ms is None
    assert groups[KILLED].crash_at_ms == round(plan.workload.span_ms / 2)


def test_the_simulated_distributor_has_the_live_dispatchers_settings(
    plan: Plan, settings: Settings
) -> None:
    scenario = simulated_plan(plan, settings).scenario
    live = dispatcher_config("affinity", Timings()).distributor(settings)
    assert scenario.strategies == ("affinity",)
    assert scenario.scheduler == live.scheduler
    assert scenario.health == live.health
    assert scenario.lease_ms == live.lease_ms == Timings().lease_ms
    assert scenario.retry_backoffs_ms == live.retry_backoffs_ms
    assert scenario.health.down_after_ms == Timings().down_after_ms
    assert scenario.offered_load == pytest.approx(plan.workload.load)
    assert scenario.time_limit_ms == plan.workload.span_ms + round(plan.drain_limit_s * 1000)


def test_the_simulated_figures_are_there_and_add_up(simulated: dict[str, Any]) -> None:
    figures = simulated["figures"]
    assert set(figures) >= FIGURE_KEYS
    assert figures["tasks"] == TASKS
    assert figures["completed"] + figures["dead_lettered"] + figures["unsettled"] == TASKS
    assert sum(figures["dead_by_reason"].values()) == figures["dead_lettered"]
    levels = figures["queue_ms_by_priority"].values()
    assert sum(level["count"] for level in levels) == figures["started"] <= TASKS
    assert set(simulated["model"]["prefetch"]) == {spec.agent_id for spec in DEMO_FLEET}
    assert set(simulated["model"]["crash_at_ms"]) == {KILLED}
    assert set(figures["agent_utilization"]) <= {spec.agent_id for spec in DEMO_FLEET}
    json.dumps(simulated)  # JSON-ready


def test_the_same_plan_simulates_the_same_figures(
    plan: Plan, settings: Settings, simulated: dict[str, Any]
) -> None:
    assert simulate_plan(plan, settings)["figures"] == simulated["figures"]


def test_the_gap_holds_both_runs_the_difference_and_the_goals(simulated: dict[str, Any]) -> None:
    sim = simulated["figures"]
    live = {**sim, "queue_ms": {**sim["queue_ms"], "mean": (sim["queue_ms"]["mean"] or 0) + 10}}
    report = gap.compare(live, sim)
    rows = report["figures"]
    levels = [f"mean_queue_ms_{level}" for level in sim["queue_ms_by_priority"]]
    assert set(rows) == {
        "mean_queue_ms",
        "p99_queue_ms",
        *levels,
        "utilization",
        "deadline_success",
        "inversions",
        "inversion_share",
        "completed",
    }
    for row in rows.values():
        assert set(row) == {"live", "simulated", "gap"}
        if row["live"] is not None and row["simulated"] is not None:
            assert row["gap"] == pytest.approx(row["live"] - row["simulated"], abs=1e-3)
    assert rows["mean_queue_ms"]["gap"] == pytest.approx(10)
    assert rows["completed"]["gap"] == 0
    assert report["goals"]["queue"]["holds"] is True
    assert rows["inversion_share"]["live"] == pytest.approx(sim["inversions"] / TASKS)
    json.dumps(report)


@pytest.mark.parametrize(
    ("extra_ms", "inversions", "holds"),
    [(25.0, 1, (True, True)), (25.2, 1, (False, True)), (0.0, 2, (True, False))],
)
def test_the_goals_are_the_issues(
    simulated: dict[str, Any], extra_ms: float, inversions: int, holds: tuple[bool, bool]
) -> None:
    """Within 25 ms of the simulated mean queue time; at most 0.1% of the tasks inverted."""
    sim = {**simulated["figures"], "queue_ms": {"mean": 100.0, "p99": 300}}
    live = {
        **sim,
        "tasks": 1_000,
        "queue_ms": {"mean": 100.0 + extra_ms, "p99": 300},
        "inversions": inversions,
    }
    goals = gap.goals(live, sim)
    assert (goals["queue"]["holds"], goals["inversions"]["holds"]) == holds


def test_the_gap_renders_as_a_table_and_goal_lines(simulated: dict[str, Any]) -> None:
    report = gap.compare(simulated["figures"], simulated["figures"])
    assert gap.table(report, "affinity").row_count == len(report["figures"])
    lines = gap.goal_lines(report)
    verdicts = [report["goals"][goal]["holds"] for goal in ("queue", "inversions")]
    assert report["goals"]["queue"]["holds"] is True  # the same figures: within 25 ms
    for line, holds in zip(lines, verdicts, strict=True):
        assert line.endswith(", holds" if holds else ", does NOT hold")
    assert KILLED in gap.model_line(simulated["model"])
