"""The reference scenario: late binding beats the push baselines.

The test runs the first 15,000 of the reference's 45,000 tasks (about 140 simulated seconds,
which still include the spot agents' crash at 120 s), for every strategy the scenario lists.
The full run is ``taskd simulate --scenario scenarios/reference.toml``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streams.core.routing.names import PUSH_STRATEGIES
from streams.core.sim import compare, scenario_from_toml

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_late_binding_beats_the_push_baselines_on_queue_time() -> None:
    scenario = scenario_from_toml((SCENARIOS / "reference.toml").read_text(encoding="utf-8"))
    scenario = replace(scenario, arrivals=replace(scenario.arrivals, tasks=15_000))
    report = compare(scenario)
    late = [r for r in report.results if r.strategy not in PUSH_STRATEGIES]
    push = [r for r in report.results if r.strategy in PUSH_STRATEGIES]
    assert len(late) == 4 and len(push) == 2
    for result in report.results:
        assert result.finished and result.tally.duplicates == 0
        assert result.accounted == 15_000
    worst_late = max(r.summary.mean_queue_ms or 0.0 for r in late)
    best_push = min(r.summary.mean_queue_ms or 0.0 for r in push)
    assert worst_late < best_push / 2, (worst_late, best_push)
    # Late binding keeps urgent tasks urgent: priority 0 barely waits, and deadlines hold.
    for result in late:
        urgent = result.summary.queue_by_priority[0].mean_ms
        assert urgent is not None and urgent < 100
        assert (result.summary.deadline_success or 0.0) > 0.99
        assert result.local_inversions == 0
    # Push: urgent tasks wait in the agents' FIFOs behind less urgent ones.
    for result in push:
        assert (result.summary.deadline_success or 1.0) < min(
            r.summary.deadline_success or 0.0 for r in late
        )
        assert result.local_inversions > 1_000
