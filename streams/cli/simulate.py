"""``taskd simulate --scenario FILE.toml [--json]``: compare routing strategies on one workload.

Reads the scenario file (the core parses the text), runs every strategy it lists (or those
given with ``--strategy``) on the same generated workload, and prints a table, or the JSON
report: the same scenario and seed print the same bytes. A scenario with ``[[variants]]``
(one global scheduler against 100 dispatcher shards, say) runs every strategy once per variant
and prints a second table comparing the variants, each against the first. ``--jobs N`` runs
N of those runs at once in worker processes (each regenerates the workload from the seed);
the output is the same bytes whatever N.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from streams.cli.style import grid, wide_console
from streams.core.sim import (
    Report,
    Scenario,
    against_first,
    compare,
    report_json,
    run,
    runs,
    scenario_from_toml,
    table,
    variant_table,
)
from streams.errors import ConfigError

_MIN_WIDTH = 210
"""Columns the table is laid out for even when piped (rich would squeeze it to 80)."""
_MIN_VARIANTS_WIDTH = 250
"""The same with variants, whose names widen the first column."""


def simulate(
    ctx: typer.Context,
    scenario: Annotated[
        Path,
        typer.Option("--scenario", "-s", help="Scenario file (TOML): agents, arrivals, task mix"),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the JSON report instead of the table")
    ] = False,
    strategies: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            help="Run this strategy instead of the scenario's list (repeat for several)",
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Runs carried out at once (processes)")
    ] = 1,
) -> None:
    """Simulate the scenario once per strategy on the same workload and compare them."""
    report = _report(load_scenario(scenario), strategies or None, jobs)
    if json_out:
        typer.echo(report_json(report))
        return
    width = _MIN_WIDTH if not report.scenario.variants else _MIN_VARIANTS_WIDTH
    console = wide_console(width)
    console.print(render(report))
    variants = render_variants(report)
    if variants is not None:
        console.print(variants)
        for line in against_first(report):
            console.print(line)


def _report(scenario: Scenario, strategies: list[str] | None, jobs: int) -> Report:
    """All runs in this process, or ``jobs`` at a time in worker processes."""
    planned = runs(scenario, strategies)
    if jobs == 1 or len(planned) == 1:
        return compare(scenario, strategies)
    with ProcessPoolExecutor(min(jobs, len(planned))) as pool:
        results = tuple(pool.map(run, planned))
    return Report(scenario, results[0].tasks, results)


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file; an unreadable file is a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"scenario {path}: cannot read it: {error}") from error
    try:
        return scenario_from_toml(text)
    except ConfigError as error:
        raise ConfigError(f"scenario {path}: {error}") from error


def render(report: Report) -> Table:
    """The comparison table, one row per strategy."""
    scenario = report.scenario
    title = (
        f"{scenario.name}: {report.tasks:,} tasks, seed {scenario.seed}, "
        f"offered load {100 * scenario.offered_load:.0f}%"
    )
    headers, rows = table(report)
    return grid(title, headers, rows)


def render_variants(report: Report) -> Table | None:
    """The comparison of the scenario's variants, or ``None`` when it has none."""
    shaped = variant_table(report)
    if shaped is None:
        return None
    headers, rows = shaped
    warmup_s = report.scenario.warmup_ms / 1000
    title = (
        f"{report.scenario.name}: the variants, steady state (tasks submitted after "
        f"{warmup_s:g} s; inversions and steals over the whole run)"
    )
    return grid(title, headers, rows)
