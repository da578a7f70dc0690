"""Run one ``taskd`` command ``runs`` times and write ``repeat.json``: every run's figures and
each figure's median and range, with what a reader needs to reproduce them.

Each run is a child process of this Python (so a checkout on ``PYTHONPATH`` is the code that
runs), with ``--out <out>/run-<n>`` appended; its output goes to ``<out>/run-<n>.log``. The
runs follow one another, never overlap: two at once would each measure the other.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.errors import ConfigError, TaskdError
from taskd_lab import ROOT
from taskd_lab.repeat.quoted import EXTRACTORS, Flat
from taskd_lab.repeat.spread import Spread, spreads

REPORT_NAME = "repeat.json"
TASKD = "import sys\nfrom streams.cli.main import main\nsys.argv[0] = 'taskd'\nmain()\n"
"""The ``taskd`` entry point run by this interpreter: the installed script would import the
``streams`` its own environment points at, not necessarily the one on ``PYTHONPATH``."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run: its figures, its wall time and the load average before and after it."""

    figures: Flat
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    log: Path


def command_kind(args: Sequence[str]) -> str:
    """``demo`` or ``bench``: the first of them among ``args`` (global options may come
    first); a ConfigError for anything else or for an ``--out`` of the user's own."""
    if "--out" in args or any(arg.startswith("--out=") for arg in args):
        raise ConfigError("repeat: leave --out out of the command; --out of repeat places runs")
    for arg in args:
        if arg in EXTRACTORS:
            return arg
    raise ConfigError(f"repeat: the command must be one of {sorted(EXTRACTORS)}, not {args!r}")


def run_once(args: Sequence[str], out_dir: Path, log: Path) -> tuple[float, int]:
    """``taskd ARGS --out OUT_DIR`` in a child process, its output to ``log``: its wall time
    and exit status."""
    began = time.monotonic()
    with log.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", TASKD, *args, "--out", str(out_dir)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return time.monotonic() - began, done.returncode


def repeat(
    args: Sequence[str],
    *,
    runs: int,
    out: Path,
    say: Callable[[str], None],
    invoked: str,
) -> dict[str, Any]:
    """Run ``taskd ARGS`` ``runs`` times in turn and write ``<out>/repeat.json``; its document.
    A run that fails stops the repeat with a TaskdError naming its log."""
    kind = command_kind(args)
    json_name, extract = EXTRACTORS[kind]
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    results: list[RunResult] = []
    for number in range(1, runs + 1):
        run_dir, log = out / f"run-{number}", out / f"run-{number}.log"
        before = os.getloadavg()
        say(f"run {number}/{runs}: taskd {shlex.join(args)} (load {_load(before)})")
        seconds, status = run_once(args, run_dir, log)
        if status != 0:
            raise TaskdError(f"repeat: run {number} exited {status}; its output is in {log}")
        figures = extract(json.loads((run_dir / json_name).read_text()))
        results.append(RunResult(figures, seconds, before, os.getloadavg(), log))
        say(f"run {number}/{runs}: done in {seconds:.0f} s (load {_load(os.getloadavg())})")
    doc = document(args, results, invoked=invoked, started=started)
    (out / REPORT_NAME).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def document(
    args: Sequence[str],
    results: Sequence[RunResult],
    *,
    invoked: str,
    started: datetime.datetime,
) -> dict[str, Any]:
    """The JSON of a repeat: how to reproduce it, the conditions, each run, each figure."""
    from taskd_lab.bench.report import machine  # psutil: only once runs are done

    return {
        "command": invoked,
        "each_run": f"taskd {shlex.join(args)} --out <out>/run-<n>",
        "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "git_commit": git_commit(),
        "env": settings_env(),
        "runs": [
            {
                "seconds": round(result.seconds, 1),
                "load_before": [round(value, 2) for value in result.load_before],
                "load_after": [round(value, 2) for value in result.load_after],
                "log": str(result.log),
                "figures": result.figures,
            }
            for result in results
        ],
        "figures": {
            name: figure.to_dict()
            for name, figure in spreads([result.figures for result in results]).items()
        },
    }


def settings_env() -> dict[str, str]:
    """The ``TASKD_*`` variables the runs saw (they change the topics, the partitions, the
    broker), secrets left out."""
    secret = ("PASSWORD", "TOKEN", "KEY", "USERNAME")
    return {
        name: value
        for name, value in sorted(os.environ.items())
        if name.startswith("TASKD_") and not any(word in name for word in secret)
    }


def git_commit() -> str:
    """The checkout's commit, ``+dirty`` when its tracked files differ from it: a dirty tree's
    figures belong to no commit."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def table(doc: dict[str, Any]) -> Table:
    """Each figure: median, lowest, highest and every run's value."""
    runs = len(doc["runs"])
    grid = Table(
        "figure",
        "median",
        "min",
        "max",
        *(f"run {n}" for n in range(1, runs + 1)),
        title=f"{doc['each_run']}: {runs} runs",
    )
    for name, figure in doc["figures"].items():
        grid.add_row(
            name,
            _shown(figure["median"]),
            _shown(figure["low"]),
            _shown(figure["high"]),
            *(_shown(value) for value in figure["values"]),
        )
    return grid


def _shown(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == int(value):
        return f"{int(value):,}"
    if value != 0 and abs(value) < 10:
        return f"{value:.4g}"
    return f"{value:,.1f}"


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def print_report(doc: dict[str, Any], console: Console) -> None:
    console.print(table(doc))


__all__ = ["Spread", "command_kind", "document", "repeat", "run_once", "table"]
