"""The simulator (driving the real distributor) agrees with queueing theory.

Poisson arrivals and exponential work on n = 4 one-slot agents at utilization 0.7:

- late binding (least-connections) keeps one queue for all agents: M/M/4, whose mean wait is
  Erlang C's ``C(4, 2.8) / (4 mu - lambda)`` = 357 ms;
- random push splits the arrivals at random into four independent M/M/1 queues of rate
  lambda / 4, whose mean wait is ``rho / (mu - lambda/4)`` = 2,333 ms.

Tolerance. A mean of queue waits converges slowly (the waits are strongly correlated), so we
measure the run's own standard error by batch means (20 batches of 5,000 tasks, each far
longer than the queue's relaxation time of a few hundred tasks) and require the simulated
mean within 4 standard errors of the closed form: a seed-independent check that a correct
simulator fails with probability ~1e-4. The standard error itself must be below 4% of the
closed form, so the check is tight enough to catch real errors: a simulator off by 15% fails,
and confusing the two models (a factor 6.5 apart) fails by far. 100,000 tasks per model keep
the test near 15 s; the long runs that show agreement within 1-2% are in
``lab/taskd_lab/bench/sim_bench.py`` (``bench_theory``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from streams.core.sim import (
    RunResult,
    erlang_c,
    erlang_c_wait_ms,
    generate,
    mm1_wait_ms,
    scenario_from_toml,
    simulate,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
TASKS = 100_000
BATCHES = 20


def batch_means(values: Sequence[int], batches: int = BATCHES) -> tuple[float, float]:
    """(mean, standard error of the mean) by the method of batch means."""
    size = len(values) // batches
    means = [statistics.fmean(values[i * size : (i + 1) * size]) for i in range(batches)]
    return statistics.fmean(values), statistics.stdev(means) / batches**0.5


def run(file: str, strategy: str) -> tuple[RunResult, float]:
    """The run of ``strategy`` on the scenario, and its arrival rate (tasks/s)."""
    scenario = scenario_from_toml((SCENARIOS / file).read_text(encoding="utf-8"))
    scenario = replace(scenario, arrivals=replace(scenario.arrivals, tasks=TASKS))
    (group,) = scenario.agents
    assert (group.count, group.capacity, group.speed, scenario.mean_work) == (4, 1, 1.0, 1.0)
    return simulate(scenario, strategy, generate(scenario)), scenario.arrivals.rate_per_s


def assert_agrees(result: RunResult, theory_ms: float) -> None:
    assert result.finished and result.tally.completed == TASKS
    assert len(result.queue_ms) == TASKS
    mean_ms, error_ms = batch_means(result.queue_ms)
    # The simulator's own measure and the distributor's Statistics are the same figure.
    assert result.summary.mean_queue_ms == pytest.approx(mean_ms)
    assert error_ms < 0.04 * theory_ms, "the run is too short to say anything"
    assert abs(mean_ms - theory_ms) < 4 * error_ms, (mean_ms, theory_ms, error_ms)
    assert result.run_utilization == pytest.approx(0.7, abs=0.01)


def test_late_binding_on_four_agents_waits_as_erlang_c() -> None:
    result, rate = run("erlang_c.toml", "least-connections")
    assert_agrees(result, erlang_c_wait_ms(4, rate, 1.0))
    # The share of tasks that wait at all is Erlang C's probability of waiting.
    waited = sum(1 for wait_ms in result.queue_ms if wait_ms > 0) / TASKS
    assert waited == pytest.approx(erlang_c(4, rate), rel=0.05)


def test_random_push_makes_each_agent_an_mm1_queue() -> None:
    result, rate = run("mm1.toml", "random-push")
    assert_agrees(result, mm1_wait_ms(rate / 4, 1.0))
    # Each agent gets a quarter of the tasks (binomial: sd 0.14% of the total).
    shares = [agent.busy_ms / sum(a.busy_ms for a in result.agents) for agent in result.agents]
    assert shares == pytest.approx([0.25] * 4, abs=0.01)
