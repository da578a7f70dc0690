"""The routing benchmark runs for every strategy and reports what it promises (no timing limits)."""

from __future__ import annotations

import pytest

from streams.core.routing import STRATEGY_NAMES
from streams.errors import ConfigError
from taskd_lab.bench.routing_bench import bench_routing


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_the_benchmark_reports_each_strategy(strategy: str) -> None:
    result = bench_routing(strategy, agents=30, decisions=300, seed=1)
    assert set(result) == {"median_us", "p99_us", "mean_us", "first_decision_ms", "busy_share"}
    assert 0 <= result["median_us"] <= result["p99_us"]
    assert 0.0 <= result["busy_share"] < 0.5


def test_the_benchmark_refuses_an_unknown_strategy() -> None:
    with pytest.raises(ConfigError):
        bench_routing("fastest", agents=3, decisions=10)
