"""Ordered keys in the simulator (``scenarios/ordered.toml``): 1,000 keys of each of two
types under load, with failing runs and a crashing agent, keep their order and never overlap;
without ordering, the same arrivals do not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streams.core.sim import Trace, scenario_from_toml, simulate
from streams.core.sim.key_order import key_order
from streams.core.sim.workload import generate

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "ordered.toml"


def test_a_thousand_keys_under_load_keep_their_order_without_overlaps() -> None:
    scenario = scenario_from_toml(SCENARIO.read_text(encoding="utf-8"))
    trace = Trace()
    result = simulate(scenario, "affinity", generate(scenario), trace)
    checked = key_order(trace)
    print(f"ordered keys: {checked.to_dict()}, completed {result.summary.completed:,}")
    assert checked.keys > 1_900  # two types of 1,000 keys each
    assert checked.runs > 0.85 * scenario.arrivals.tasks
    assert (checked.violations, checked.overlaps) == (0, 0)
    assert result.summary.completed > 0.99 * scenario.arrivals.tasks


def test_the_same_workload_without_ordering_runs_keys_out_of_order_and_side_by_side() -> None:
    """The check on the same arrivals with their keys hidden from the core (read back by id):
    what ordering prevents happens, so the 0s above are not the check's blindness."""
    scenario = scenario_from_toml(SCENARIO.read_text(encoding="utf-8"))
    arrivals = generate(scenario)
    headers = {arrival.job.task_id: arrival.job.headers for arrival in arrivals}
    unkeyed = [replace(arrival, job=replace(arrival.job, headers=())) for arrival in arrivals]
    trace = Trace()
    simulate(scenario, "affinity", unkeyed, trace)
    trace.runs[:] = [
        replace(run, job=replace(run.job, headers=headers[run.job.task_id])) for run in trace.runs
    ]
    checked = key_order(trace)
    print(f"the same without ordering: {checked.to_dict()}")
    assert checked.violations > 100 and checked.overlaps > 100
