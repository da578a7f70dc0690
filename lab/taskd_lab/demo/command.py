"""What ``taskd demo`` runs once its options are parsed (``streams.cli.demo`` holds the
options, so the CLI starts without the lab)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from streams.settings import Settings
from taskd_lab.procs import interrupts_as_keyboard


def run_command(
    settings: Settings,
    *,
    tasks: int | None,
    out: Path,
    baseline: bool,
    seed: int,
    rate: float | None,
) -> None:
    """Run the demo; ``None`` leaves the reference workload's own value (its size, its rate).
    Stopped like Ctrl-C, it stops every process it started and exits 130."""
    from taskd_lab.demo.session import DemoOptions, run_demo  # rich + matplotlib: only here

    console = Console()
    options = DemoOptions(seed=seed, out_dir=out, baseline=baseline)
    if tasks is not None:
        options = replace(options, tasks=tasks)
    if rate is not None:
        options = replace(options, rate_per_s=rate)
    try:
        with interrupts_as_keyboard():  # stopped like Ctrl-C: clean up first
            run_demo(settings, options, console)
    except KeyboardInterrupt:
        console.print("\ndemo interrupted: every process it started is stopped")
        raise typer.Exit(130) from None
