"""``taskd demo``: the reference workload live through Kafka, against the round-robin baseline
and against the same fleet and workload simulated (the live-against-simulated gap)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streams.cli.context import settings_of
from streams.demo.workload import RATE_PER_S
from streams.procs import interrupts_as_keyboard


def demo(
    ctx: typer.Context,
    tasks: Annotated[
        int, typer.Option("--tasks", min=1, help="tasks of the reference workload to run")
    ] = 45_000,
    out: Annotated[
        Path, typer.Option("--out", help="where the JSON figures and the PNG report go")
    ] = Path("out/demo"),
    baseline: Annotated[
        bool,
        typer.Option("--baseline/--no-baseline", help="also run the round-robin-push baseline"),
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="seed of the workload")] = 42,
    rate: Annotated[
        float, typer.Option("--rate", min=1.0, help="tasks submitted per second")
    ] = RATE_PER_S,
) -> None:
    """Run the reference workload through the dispatcher and real agents; print the summary
    and the gap to the same run simulated."""
    from streams.demo.session import DemoOptions, run_demo  # rich + matplotlib: only here

    console = Console()
    options = DemoOptions(tasks=tasks, seed=seed, out_dir=out, baseline=baseline, rate_per_s=rate)
    try:
        with interrupts_as_keyboard():  # stopped like Ctrl-C: clean up first
            run_demo(settings_of(ctx), options, console)
    except KeyboardInterrupt:
        console.print("\ndemo interrupted: every process it started is stopped")
        raise typer.Exit(130) from None
