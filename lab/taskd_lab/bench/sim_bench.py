"""Benchmarks of the simulator: throughput on a large fleet, and agreement with theory.

``bench_simulator`` runs ``tasks`` tasks on ``agents`` agents (4 slots each, Poisson arrivals
at 80% load, exponential work of mean 0.1 units, four priority levels, two tenants, zipf
affinity keys) and reports tasks per second of wall clock. ``bench_theory`` runs the two
closed-form scenarios long enough to show agreement within a few percent.

Run ``python -m taskd_lab.bench.sim_bench [--tasks N] [--agents N] [--strategy S] [--profile]``
or ``python -m taskd_lab.bench.sim_bench theory [--tasks N]``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from dataclasses import replace

from streams.core.sim import (
    erlang_c_wait_ms,
    generate,
    mm1_wait_ms,
    parse_scenario,
    scenario_from_toml,
    simulate,
)
from streams.core.sim.scenario import Scenario
from taskd_lab import ROOT

SCENARIOS = ROOT / "scenarios"


def fleet_scenario(tasks: int, agents: int, strategy: str, seed: int) -> Scenario:
    """A large, plain fleet: what the throughput benchmark runs."""
    work = {"distribution": "exponential", "mean": 0.1}
    return parse_scenario(
        {
            "name": "bench",
            "seed": seed,
            "strategies": [strategy],
            "health": {
                "heartbeat_interval_ms": 5_000,
                "suspect_after_ms": 15_000,
                "down_after_ms": 30_000,
            },
            "arrivals": {"process": "poisson", "load": 0.8, "tasks": tasks},
            "agents": [{"name": "agent", "count": agents, "capacity": 4, "speed": 1.0}],
            "tasks": [
                {"share": 0.1, "priority": 0, "work": work, "tenants": ["a", "b"]},
                {"share": 0.3, "priority": 1, "work": work, "tenants": ["a", "b"]},
                {
                    "share": 0.4,
                    "priority": 2,
                    "work": work,
                    "tenants": ["a", "b"],
                    "affinity_keys": 10_000,
                    "affinity": "zipf",
                },
                {"share": 0.2, "priority": 3, "work": work, "tenants": ["b"]},
            ],
        }
    )


def bench_simulator(
    tasks: int = 1_000_000,
    agents: int = 1_000,
    strategy: str = "power-of-two-choices",
    seed: int = 0,
) -> dict[str, float]:
    """Simulate ``tasks`` on ``agents``; wall-clock figures of the generation and the run."""
    scenario = fleet_scenario(tasks, agents, strategy, seed)
    started = time.perf_counter()
    arrivals = generate(scenario)
    generated = time.perf_counter()
    result = simulate(scenario, strategy, arrivals)
    finished = time.perf_counter()
    run_s = finished - generated
    return {
        "tasks": float(tasks),
        "agents": float(agents),
        "generate_s": generated - started,
        "run_s": run_s,
        "tasks_per_s": tasks / run_s,
        "events": float(result.events),
        "events_per_s": result.events / run_s,
        "simulated_s": result.end_ms / 1000,
        "completed": float(result.tally.completed),
        "mean_queue_ms": result.summary.mean_queue_ms or 0.0,
    }


def bench_theory(tasks: int = 1_000_000, seed: int = 1) -> dict[str, float]:
    """Mean queue times of the M/M/4 (least-connections) and 4 x M/M/1 (random-push) runs
    against their closed forms, with batch-means standard errors (ms)."""
    figures: dict[str, float] = {}
    for file, strategy, name in (
        ("erlang_c.toml", "least-connections", "erlang_c"),
        ("mm1.toml", "random-push", "mm1"),
    ):
        scenario = scenario_from_toml((SCENARIOS / file).read_text(encoding="utf-8"))
        scenario = replace(scenario, seed=seed, arrivals=replace(scenario.arrivals, tasks=tasks))
        rate = scenario.arrivals.rate_per_s
        theory = erlang_c_wait_ms(4, rate, 1.0) if name == "erlang_c" else mm1_wait_ms(rate / 4, 1)
        result = simulate(scenario, strategy, generate(scenario))
        mean, error = _batch_means(list(result.queue_ms))
        figures |= {
            f"{name}_theory_ms": theory,
            f"{name}_simulated_ms": mean,
            f"{name}_error_ms": error,
            f"{name}_relative": mean / theory - 1,
        }
    return figures


def _batch_means(values: list[int], batches: int = 20) -> tuple[float, float]:
    size = len(values) // batches
    means = [statistics.fmean(values[i * size : (i + 1) * size]) for i in range(batches)]
    return statistics.fmean(values), statistics.stdev(means) / batches**0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["simulator", "theory"], default="simulator")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--strategy", default="power-of-two-choices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    args = parser.parse_args()
    if args.what == "theory":
        _print(bench_theory(args.tasks, args.seed or 1))
        return
    if not args.profile:
        _print(bench_simulator(args.tasks, args.agents, args.strategy, args.seed))
        return
    profile = cProfile.Profile()
    figures = profile.runcall(bench_simulator, args.tasks, args.agents, args.strategy, args.seed)
    _print(figures)
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def _print(figures: dict[str, float]) -> None:
    for key, value in figures.items():
        print(f"{key:>24}: {value:,.4f}")


if __name__ == "__main__":
    main()
