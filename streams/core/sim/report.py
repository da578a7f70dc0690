"""Every strategy of a scenario on the same workload, as a table and as JSON.

``compare`` generates the workload once and replays it per strategy, and per variant when the
scenario has some (one global scheduler against 100 shards, say: every variant replays the
same arrivals); ``report_json`` is the byte-stable output of ``taskd simulate --json``;
``table`` gives the rows the CLI renders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from streams.core.routing.names import check_strategy_name
from streams.core.sim.engine import simulate
from streams.core.sim.result import RunResult
from streams.core.sim.scenario import Scenario
from streams.core.sim.workload import generate


@dataclass(frozen=True, slots=True)
class Report:
    """The runs of one scenario, one per strategy (and variant), in the order asked."""

    scenario: Scenario
    tasks: int
    results: tuple[RunResult, ...]


def compare(scenario: Scenario, strategies: Sequence[str] | None = None) -> Report:
    """Run each strategy (default: the scenario's) on one workload generated from the seed."""
    names = tuple(strategies) if strategies else scenario.strategies
    for index, name in enumerate(names):
        check_strategy_name(name, field=f"strategies[{index}]")
    arrivals = generate(scenario)
    if not scenario.variants:
        results = tuple(simulate(scenario, name, arrivals) for name in names)
        return Report(scenario, len(arrivals), results)
    runs = [
        replace(simulate(scenario.with_variant(variant), name, arrivals), variant=variant.name)
        for variant in scenario.variants
        for name in names
    ]
    return Report(scenario, len(arrivals), tuple(runs))


def report_dict(report: Report) -> dict[str, object]:
    """``{"scenario", "seed", "tasks", "offered_load", "results": {strategy: figures}}``."""
    scenario = report.scenario
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "tasks": report.tasks,
        "offered_load": round(scenario.offered_load, 4),
        "results": {result.label: result.to_dict() for result in report.results},
    }


def report_json(report: Report) -> str:
    """The report as indented JSON (same scenario and seed: the same bytes)."""
    return json.dumps(report_dict(report), indent=2)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the comparison table: a header and how to show a run's figure."""

    header: str
    show: Callable[[RunResult], str]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


COLUMNS: tuple[Column, ...] = (
    Column("strategy", lambda r: r.label),
    Column("done", lambda r: f"{r.tally.completed:,}"),
    Column("dead", lambda r: f"{r.tally.dead_total:,}"),
    Column("mean q ms", lambda r: _ms(r.summary.mean_queue_ms)),
    Column("p50 q ms", lambda r: _ms(r.summary.p50_queue_ms)),
    Column("p99 q ms", lambda r: _ms(r.summary.p99_queue_ms)),
    Column("p0 mean ms", lambda r: _ms(_level_mean(r, 0))),
    Column("util", lambda r: _pct(r.run_utilization)),
    Column("load cv", lambda r: f"{r.summary.load_cv:.3f}"),
    Column("max/mean", lambda r: f"{r.summary.max_load_ratio:.2f}"),
    Column("deadline ok", lambda r: _pct(r.summary.deadline_success)),
    Column("inversions", lambda r: f"{r.priority_inversions:,}"),
    Column("affinity hit", lambda r: _pct(r.summary.affinity_hit_rate)),
    Column("makespan s", lambda r: f"{r.makespan_ms / 1000:,.0f}"),
)


def _level_mean(result: RunResult, level: int) -> float | None:
    times = result.summary.queue_by_priority.get(level)
    return None if times is None else times.mean_ms


def table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Headers and one row of text per strategy."""
    headers = [column.header for column in COLUMNS]
    rows = [[column.show(result) for column in COLUMNS] for result in report.results]
    return headers, rows
