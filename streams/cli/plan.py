"""``taskd plan --scenario FILE.toml --slo "p99_queue<500ms,deadline>99%"``: capacity planning.

Reads the scenario as ``taskd simulate`` does, asks the core's planner
(``streams/core/sim/plan.py``) for the cheapest fleet of the scenario's agent groups meeting
the SLO, and prints the table of every fleet it simulated and the answer (or, with ``--json``,
the JSON; ``--out FILE`` writes the JSON as well). Each run is reported on stderr as it ends
(``--quiet``: not). For an M/M/c scenario it also prints Erlang C's answer beside the plan's.
A mistake in the SLO is one ``error:`` line each; a plan that finds no fleet prints what it
tried, then says so in one line and exits 1.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from streams.cli.simulate import load_scenario
from streams.cli.style import USAGE_EXIT, fail, grid, wide_console
from streams.core.routing.names import check_strategy_name
from streams.core.sim.plan import MAX_RUNS, Plan, Trial, closed_form, plan
from streams.core.sim.plan_report import closed_form_line, plan_json, plan_table
from streams.core.sim.scenario import Scenario
from streams.core.sim.slo import Slo, SloError, parse_slo
from streams.errors import ConfigError

_MIN_WIDTH = 120
"""Columns the table is laid out for even when piped (rich would squeeze it to 80)."""


def plan_command(
    scenario: Annotated[
        Path,
        typer.Option("--scenario", "-s", help="Scenario file (TOML): agents, arrivals, task mix"),
    ],
    slo: Annotated[
        str,
        typer.Option(
            "--slo",
            help="Objectives, comma-separated: p99_queue|p50_queue|mean_queue <ms|s, "
            "deadline|completion >%, utilization <% or >%; e.g. 'p99_queue<500ms,deadline>99%'",
        ),
    ],
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy", help="Routing strategy of every run (else the scenario's first)"
        ),
    ] = None,
    tasks: Annotated[
        int | None,
        typer.Option("--tasks", min=1, help="Tasks per run instead of the scenario's"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the workload instead of the scenario's")
    ] = None,
    max_runs: Annotated[
        int, typer.Option("--max-runs", min=1, help="Simulations at most (each a fleet)")
    ] = MAX_RUNS,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the JSON plan instead of the table")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON plan here")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress lines on stderr")
    ] = False,
) -> None:
    """Find how many agents of each group meet an SLO, and at what cost, by simulation."""
    objectives = _slo(slo)
    planned = _scenario(load_scenario(scenario), tasks, seed)
    if strategy is not None:
        check_strategy_name(strategy, field="--strategy")
    names = [group.name for group in planned.agents]

    def progress(trial: Trial, number: int) -> None:
        fleet = " ".join(f"{n}={c}" for n, c in zip(names, trial.counts, strict=True))
        verdict = "met" if trial.met else "missed"
        typer.echo(f"plan: run {number}/{max_runs} ({trial.step}): {fleet}: {verdict}", err=True)

    result = plan(
        planned,
        objectives,
        strategy=strategy,
        max_runs=max_runs,
        on_trial=None if quiet else progress,
    )
    closed = closed_form(planned, objectives, result.strategy)
    text = plan_json(result, closed)
    if out is not None:
        try:
            out.write_text(text + "\n", encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"--out {out}: cannot write it: {error}") from error
    if json_out:
        typer.echo(text)
    else:
        console = wide_console(_MIN_WIDTH)
        console.print(render(result))
        console.print(f"Plan: {result.verdict}", soft_wrap=True)
        if closed is not None:
            console.print(closed_form_line(closed, result), soft_wrap=True)
    if result.answer is None:
        fail(result.verdict)


def _slo(text: str) -> Slo:
    """The parsed SLO; every mistake one ``error:`` line on stderr, exit status 2."""
    try:
        return parse_slo(text)
    except SloError as error:
        *first, last = error.mistakes
        for mistake in first:
            typer.echo(f"error: --slo: {mistake}", err=True)
        fail(f"--slo: {last}", USAGE_EXIT)


def _scenario(scenario: Scenario, tasks: int | None, seed: int | None) -> Scenario:
    if tasks is not None:
        arrivals = replace(scenario.arrivals, tasks=tasks, duration_ms=None)
        scenario = replace(scenario, arrivals=arrivals)
    return scenario if seed is None else replace(scenario, seed=seed)


def render(result: Plan) -> Table:
    """The table of every fleet tried."""
    scenario = result.scenario
    title = (
        f"{scenario.name}: {result.tasks:,} tasks, seed {scenario.seed}, "
        f"{result.strategy}, SLO {result.slo.text}"
    )
    headers, rows = plan_table(result)
    return grid(title, headers, rows, text=(0, 1, len(headers) - 1))  # run, step, verdict
