"""The simulator's batch handlers (``streams.core.sim.batching``): on a load the fleet keeps up
with, grouping makes the handler's calls full and far fewer; at saturation both run full
batches, grouping at no cost in throughput; the scenario file is checked like the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.sim.batching import BatchScenario, run_batching, scenario_from_toml
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_grouping_fills_the_calls_of_a_fleet_that_keeps_up_and_costs_the_handler_less() -> None:
    scenario = BatchScenario(tasks=1_500, rates_per_s=(400.0,))
    grouped, spread = run_batching(scenario)
    assert grouped.tasks == spread.tasks == 1_500
    assert grouped.mean_batch >= 15 and spread.mean_batch <= 6
    assert grouped.calls * 3 <= spread.calls
    assert grouped.handler_ms_per_task < spread.handler_ms_per_task / 2
    assert grouped.p99_wait_ms <= scenario.group_max_wait_ms + scenario.max_wait_ms


def test_at_saturation_grouping_costs_nothing() -> None:
    """Both run full calls; grouping's throughput is at least the other's (in a run this short
    it is higher: its groups go to the handler at once from the first pass)."""
    grouped, spread = run_batching(BatchScenario(tasks=1_500, rates_per_s=(20_000.0,)))
    assert grouped.mean_batch >= 15.5 and spread.mean_batch >= 15.5
    assert grouped.throughput_tps >= spread.throughput_tps * 0.95


def test_the_scenario_file_parses_and_a_misspelt_key_is_refused() -> None:
    scenario = scenario_from_toml((ROOT / "scenarios" / "batching" / "grouping.toml").read_text())
    assert scenario.max_size == 16 and scenario.agents == 8
    with pytest.raises(ConfigError, match="max_sise"):
        scenario_from_toml("[handler]\nmax_sise = 4\n")
