"""``taskd simulate --scenario FILE.toml [--json]``: compare routing strategies on one workload.

Reads the scenario file (the core parses the text), runs every strategy it lists (or those
given with ``--strategy``) on the same generated workload, and prints a table, or the JSON
report: the same scenario and seed print the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams.core.sim import Report, Scenario, compare, report_json, scenario_from_toml, table
from streams.errors import ConfigError

_MIN_WIDTH = 180
"""Columns the table is laid out for even when piped (rich would squeeze it to 80)."""


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
) -> None:
    """Simulate the scenario once per strategy on the same workload and compare them."""
    report = compare(load_scenario(scenario), strategies or None)
    if json_out:
        typer.echo(report_json(report))
        return
    console = Console()
    if console.width < _MIN_WIDTH:
        console = Console(width=_MIN_WIDTH)
    console.print(render(report))


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
    grid = Table(title=title)
    for index, header in enumerate(headers):
        grid.add_column(header, no_wrap=True, justify="left" if index == 0 else "right")
    for row in rows:
        grid.add_row(*row)
    return grid
