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
from streams.core.sim.slo import Figures, parse_slo
from streams.core.sim.spec import Variant
from streams.core.sim.steady import Steady
from streams.core.sim.workload import Arrival, generate
from streams.errors import CoreError


@dataclass(frozen=True, slots=True)
class Report:
    """The runs of one scenario, one per strategy (and variant), in the order asked."""

    scenario: Scenario
    tasks: int
    results: tuple[RunResult, ...]


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a comparison: a strategy, in one variant (``None``: no variants)."""

    scenario: Scenario
    """The scenario as written (its variants included)."""
    strategy: str
    variant: Variant | None = None


def runs(scenario: Scenario, strategies: Sequence[str] | None = None) -> list[Run]:
    """The runs of a comparison, in report order: each variant's, strategy after strategy."""
    names = tuple(strategies) if strategies else scenario.strategies
    for index, name in enumerate(names):
        check_strategy_name(name, field=f"strategies[{index}]")
    variants: Sequence[Variant | None] = scenario.variants or (None,)
    return [Run(scenario, name, variant) for variant in variants for name in names]


def run(planned: Run, arrivals: Sequence[Arrival] | None = None) -> RunResult:
    """Carry out one run; ``arrivals``: the scenario's workload, generated when not given
    (a run in another process generates its own, the same from the same seed)."""
    scenario = planned.scenario
    work = generate(scenario) if arrivals is None else arrivals
    if planned.variant is None:
        result = simulate(scenario, planned.strategy, work)
    else:
        result = simulate(scenario.with_variant(planned.variant), planned.strategy, work)
        result = replace(result, variant=planned.variant.name)
    if scenario.slo is not None:
        result = replace(result, slo_met=parse_slo(scenario.slo).met(Figures.of(result)))
    return result


def compare(scenario: Scenario, strategies: Sequence[str] | None = None) -> Report:
    """Run each strategy (default: the scenario's), in each variant, on one workload
    generated from the seed."""
    planned = runs(scenario, strategies)
    arrivals = generate(scenario)
    return Report(scenario, len(arrivals), tuple(run(one, arrivals) for one in planned))


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
    Column("busy agent-s", lambda r: f"{r.agent_busy_ms / 1000:,.0f}"),
    Column("unused agents", lambda r: f"{r.agents_unused:,}"),
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


VARIANT_COLUMNS: tuple[Column, ...] = (
    Column("variant", lambda r: r.label),
    Column("shards", lambda r: f"{r.shards:,}"),
    Column("instances", lambda r: f"{r.instances:,}"),
    Column("sharding", lambda r: r.sharding if r.instances > 1 else "-"),
    Column("steal ms", lambda r: f"{r.steal_ms:,}" if r.steal_ms else "-"),
    Column("util", lambda r: _pct(_steady(r).utilization)),
    Column("mean q ms", lambda r: _ms2(_steady(r).mean_queue_ms)),
    Column("p99 q ms", lambda r: _ms(_steady(r).p99_queue_ms)),
    Column("p0 mean ms", lambda r: _ms2(_steady(r).by_level[0].mean_ms)),
    Column("p0 p99 ms", lambda r: _ms(_steady(r).by_level[0].p99_ms)),
    Column("inversions", lambda r: f"{r.priority_inversions:,}"),
    Column("cross-shard", lambda r: f"{r.cross_shard_inversions:,}"),
    Column("stolen", lambda r: f"{r.tally.stolen:,}"),
)
"""The comparison of variants: what sharding changes. Utilization and queue times are the
steady state's (after the scenario's ``warmup_ms``, to the last arrival), with more precision
on small waits; inversions and steals count the whole run."""


def _steady(result: RunResult) -> Steady:
    if result.steady is None:
        raise CoreError(f"run {result.label} has no steady-state figures")
    return result.steady


def _ms2(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def against_first(report: Report) -> list[str]:
    """Each run's steady mean queue time against the first run's (the baseline), one line
    each: the difference in ms, and the ratio when the baseline's is not 0."""
    results = report.results
    base = _steady(results[0]).mean_queue_ms if results else None
    lines = []
    for result in results[1:]:
        mean = _steady(result).mean_queue_ms
        if base is None or mean is None:
            continue
        ratio = f", {mean / base:.2f}x" if base > 0 else " (the baseline waits 0 ms)"
        lines.append(f"{result.label}: mean wait {mean - base:+,.2f} ms{ratio}")
    return lines


SCALING_COLUMNS: tuple[Column, ...] = (
    Column("p99 q ms (all)", lambda r: _ms(r.summary.p99_queue_ms)),
    Column("agent-s", lambda r: f"{r.agent_up_ms / 1000:,.0f}"),
    Column("started/drained", lambda r: f"{r.tally.scaled_up}/{r.tally.scaled_down}"),
    Column("slo", lambda r: "-" if r.slo_met is None else ("met" if r.slo_met else "missed")),
)
"""Added to the comparison of variants of a scenario with ``[autoscale]`` or an ``slo``: the
whole run's p99 queue time, the agent-seconds paid (up time, boots included), the agents an
autoscaler started and drained, and the SLO judged on the whole run."""


PREEMPTION_COLUMNS: tuple[Column, ...] = (
    Column("p0 p99 ms (all)", lambda r: _ms(_level_p99(r, 0))),
    Column("preempted", lambda r: f"{r.tally.preempted:,}"),
    Column("lost run s", lambda r: f"{r.tally.preempted_run_ms / 1000:,.1f}"),
)
"""Added to the comparison of variants of a scenario with ``[preemption]``: the whole run's p0
p99 queue time, the runs stopped for a more urgent task and the run time they lost."""


def _level_p99(result: RunResult, level: int) -> int | None:
    times = result.summary.queue_by_priority.get(level)
    return None if times is None else times.p99_ms


def variant_table(report: Report) -> tuple[list[str], list[list[str]]] | None:
    """Headers and one row per run when the scenario has variants; ``None`` otherwise."""
    scenario = report.scenario
    if not scenario.variants:
        return None
    columns = VARIANT_COLUMNS
    if scenario.autoscale is not None or scenario.slo is not None:
        columns += SCALING_COLUMNS
    if scenario.preemption.enabled:
        columns += PREEMPTION_COLUMNS
    headers = [column.header for column in columns]
    rows = [[column.show(result) for column in columns] for result in report.results]
    return headers, rows
