"""``taskd bench``: the pipeline benchmark against the floor under it, peers and memory: what
it carries (throughput, latency, the sustained rate) and what that costs (CPU and Kafka records
per task).

The benchmark itself is in the lab (``taskd_lab.bench``), imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.cli.context import settings_of
from streams.cli.lab import lab_imports


def bench(
    ctx: typer.Context,
    tasks: Annotated[
        int | None,
        typer.Option(
            "--tasks",
            min=100,
            help="tasks per throughput run, ours and each peer's (100,000; --quick: 3,000)",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="a small run for a first look (a few minutes)")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="directory of the report")] = Path("out/bench"),
    sections: Annotated[
        str | None,
        typer.Option(
            "--sections",
            help="comma-separated: pipeline, results, group, floor, memory, peers, quality "
            "(default: all)",
        ),
    ] = None,
    docs: Annotated[
        bool, typer.Option("--docs/--no-docs", help="regenerate docs/benchmarks.md")
    ] = True,
) -> None:
    """Benchmark our pipeline (throughput, latency, sustained rate, CPU and records per task,
    memory) against the stack's floor and its peers (from a source checkout)."""
    with lab_imports("bench"):
        from taskd_lab.bench.command import run_command

    run_command(settings_of(ctx), tasks=tasks, quick=quick, out=out, sections=sections, docs=docs)
