"""``taskd demo``: the reference workload live through Kafka, against the round-robin baseline
and against the same fleet and workload simulated (the live-against-simulated gap).

The demo itself is in the lab (``taskd_lab.demo``), imported when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.cli.context import settings_of
from streams.cli.lab import lab_imports


def demo(
    ctx: typer.Context,
    tasks: Annotated[
        int | None,
        typer.Option("--tasks", min=1, help="tasks of the reference workload to run (45,000)"),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="where the JSON figures and the PNG report go")
    ] = Path("out/demo"),
    baseline: Annotated[
        bool,
        typer.Option("--baseline/--no-baseline", help="also run the round-robin-push baseline"),
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="seed of the workload")] = 42,
    rate: Annotated[
        float | None,
        typer.Option("--rate", min=1.0, help="tasks submitted per second (the workload's 300)"),
    ] = None,
) -> None:
    """Run the reference workload through the dispatcher and real agents; print the summary
    and the gap to the same run simulated (from a source checkout)."""
    with lab_imports("demo"):
        from taskd_lab.demo.command import run_command

    run_command(settings_of(ctx), tasks=tasks, out=out, baseline=baseline, seed=seed, rate=rate)
