"""What ``taskd bench`` runs once its options are parsed (``streams.cli.bench`` holds the
options, so the CLI starts without the lab).

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

from rich.console import Console
from rich.markdown import Markdown

from streams.errors import ConfigError
from streams.settings import Settings
from taskd_lab.bench.plan import DEFAULT_TASKS, SECTIONS, BenchPlan
from taskd_lab.procs import interrupts_as_keyboard

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def run_command(
    settings: Settings,
    *,
    tasks: int | None,
    quick: bool,
    out: Path,
    sections: str | None,
    docs: bool,
) -> None:
    """Run the benchmark and write its report; ``sections`` None: every section."""
    # psutil and matplotlib are imported only when a benchmark runs
    from taskd_lab.bench.report import DOCS, render_markdown, write_report
    from taskd_lab.bench.suite import run_suite

    chosen = _sections(sections) if sections is not None else list(SECTIONS)
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
