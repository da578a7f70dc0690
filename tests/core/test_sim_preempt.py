"""Preemption in the simulator: ``scenarios/preempt.toml`` with and without it, on one workload.

The figures themselves are in docs/results.md (*Preempting*); here, what must hold whatever
they are: every task ends once, a p0 task never waits much past its bound with preemption, the
runs stopped are counted with the run time they lost, and without it nothing is stopped.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from streams.core.sim import compare, parse_scenario
from streams.core.sim.result import RunResult
from streams.errors import ConfigError

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "preempt.toml"


def _scenario(**top: Any) -> dict[str, Any]:
    data = tomllib.loads(SCENARIO.read_text())
    data["arrivals"]["tasks"] = 800  # enough to saturate, quick to run
    return {**data, **top}


def _runs() -> dict[str, RunResult]:
    report = compare(parse_scenario(_scenario()))
    return {result.variant or "": result for result in report.results}


def test_preemption_bounds_the_p0_wait_and_counts_the_work_it_loses() -> None:
    runs = _runs()
    without, with_it = runs["without preemption"], runs["preempt p0 after 2 s"]
    for result in (without, with_it):
        assert result.finished and result.tally.duplicates == 0
        assert result.tally.completed == result.tasks
    assert without.tally.preempted == 0 and without.tally.preempted_run_ms == 0
    assert with_it.tally.preempted > 0 and with_it.tally.preempted_run_ms > 0
    bound_ms = 2_000
    p0_with = with_it.summary.queue_by_priority[0]
    p0_without = without.summary.queue_by_priority[0]
    assert p0_with.p99_ms is not None and p0_with.p99_ms <= bound_ms  # the stop is at once here
    assert p0_without.p99_ms is not None and p0_without.p99_ms > bound_ms
    assert with_it.tally.requeued >= with_it.tally.preempted  # each went back to the queue
    assert with_it.to_dict()["preempted"] == with_it.tally.preempted
    assert with_it.tally.dead_total == 0  # no attempt spent: none ran out of them


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"after_ms": {"0": -1}}, "preemption.after_ms: needs level = ms >= 0"),
        ({"after_ms": {"9": 10}}, r"levels \[9\] do not exist"),
        ({"victims": [0]}, "victims: expected integers > 0"),
        ({"after": 1}, "preemption.after: unknown key"),
    ],
)
def test_a_bad_preemption_table_names_the_field(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scenario(_scenario(preemption=table))
