"""``taskd bench``: the pipeline benchmark against the floor under it, peers and memory: what
it carries (throughput, latency, the sustained rate) and what that costs (CPU and Kafka records
per task).

Runs real child processes (dispatcher, agents, passthrough programs) against the broker of
the settings, which must be local (127.0.0.1): a benchmark floods the broker, never a shared
one. Writes ``<out>/bench.json``, PNG plots and the markdown report, and regenerates
``docs/benchmarks.md`` unless ``--no-docs``. Measures and reports; it never fails on a figure.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown

from streams.bench.plan import DEFAULT_TASKS, SECTIONS, BenchPlan
from streams.cli.context import settings_of
from streams.errors import ConfigError
from streams.settings import Settings

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


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
        str, typer.Option("--sections", help=f"comma-separated, of {','.join(SECTIONS)}")
    ] = ",".join(SECTIONS),
    docs: Annotated[
        bool, typer.Option("--docs/--no-docs", help="regenerate docs/benchmarks.md")
    ] = True,
) -> None:
    """Benchmark our pipeline (throughput, latency, sustained rate, CPU and records per task,
    memory) against the stack's floor and its peers."""
    # psutil and matplotlib (the `bench` extra) are imported only when a benchmark runs
    from streams.bench.report import DOCS, render_markdown, write_report
    from streams.bench.suite import run_suite
    from streams.procs import interrupts_as_keyboard

    settings = settings_of(ctx)
    chosen = _sections(sections)
    _check_local(settings)
    out = out.resolve()
    work_dir = out / "work"
    plan = (
        BenchPlan.quick(work_dir=work_dir, base=settings, tasks=tasks)
        if quick
        else BenchPlan(tasks=tasks or DEFAULT_TASKS, work_dir=work_dir, base=settings)
    )
    console = Console()
    started = time.monotonic()

    def progress(line: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/dim]  {line}", highlight=False)

    command = " ".join(["taskd", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else "taskd bench"
    shutil.rmtree(work_dir, ignore_errors=True)
    with interrupts_as_keyboard(), console.status("benchmarking"):
        doc = run_suite(plan, chosen, progress, command=command)
    doc["out_dir"] = _shown(out)
    written = write_report(doc, out, DOCS if docs else None)
    console.print(Markdown(render_markdown(doc)))
    console.print("written: " + ", ".join(_shown(path) for path in written), highlight=False)


def _sections(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown or not chosen:
        raise ConfigError(f"--sections: unknown {unknown or 'none given'}; known: {SECTIONS}")
    return chosen


def _check_local(settings: Settings) -> None:
    hosts = {server.rsplit(":", 1)[0] for server in settings.bootstrap_servers.split(",")}
    if not hosts <= _LOCAL_HOSTS:
        raise ConfigError(
            f"taskd bench floods its broker: it runs only against a local one (127.0.0.1), "
            f"not {settings.bootstrap_servers}"
        )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
