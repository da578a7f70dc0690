"""A soak: the pipeline at a steady rate for a long time, its memory watched.

    python -m taskd_lab.soak --minutes 30 --rate 500 --out out/soak

The same pipeline as ``taskd bench`` (``taskd dispatcher`` and ``plan.agents`` ``taskd agent``
child processes, the no-op task) is fed ``rate`` tasks a second for ``minutes``, in windows of
WINDOW_S. After each window: the backlog (tasks sent whose result has not been seen) and the
resident memory of every process. At the end it waits for every result and reports whether
anything was lost, the largest backlog, and each process's RSS after the warm-up: its median
and how far its lowest and highest samples stray from it. The warm-up is the first WARM_UP
share of the run; for an agent, longer if its window of attempts already run
(``seen_attempts``, docs/memory.md) filled later: at its ``seen_attempts``-th result, as the
results say, since agents do not share the tasks evenly. Memory bounded by design grows until
its windows are full, then stays. The goal the soak checks: every RSS within ±10% of its
median after its warm-up, nothing lost, the backlog bounded. It writes ``soak.json`` into
``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.adapters.worker.config import SEEN_ATTEMPTS
from streams.settings import load_settings
from taskd_lab.bench.measure import paced, run_ids
from taskd_lab.bench.ours import running_pipeline
from taskd_lab.bench.plan import BenchPlan

WINDOW_S = 10.0
WARM_UP = 0.2
"""The share of the run left out of the memory figures: caches and pools filling."""
FLAT = 0.10
"""How far (either way) an RSS may stray from its median after warm-up."""

Progress = Callable[[str], None]


def run_soak(plan: BenchPlan, *, minutes: float, rate: float, progress: Progress) -> dict[str, Any]:
    """Feed the pipeline ``rate`` tasks/s for ``minutes``; the report (module docstring)."""
    windows = max(1, round(minutes * 60 / WINDOW_S))
    sent: list[str] = []
    backlog: list[tuple[float, int]] = []
    with running_pipeline(plan, "soak") as pipeline:
        run = pipeline.run
        started = time.monotonic()
        for window in range(windows):
            ids = run_ids(round(rate * WINDOW_S), f"soak{window}")
            paced(run.send, run.flush, ids, rate)
            sent += ids
            waiting = len(sent) - run.seen_count(sent)
            backlog.append((time.monotonic() - started, waiting))
            progress(f"{(window + 1) * WINDOW_S:.0f} s: {len(sent):,} sent, backlog {waiting:,}")
        ends = run.done(sent)
        samples = list(pipeline.rss.samples)
        failed = run.failed()
        filled = windows_filled_at(run.by_agent(ends.done), started)
    elapsed = max(at for at, _ in backlog)
    warm_up = {
        name: warm_up_s(elapsed, filled.get(name)) for name in {name for _, name, _ in samples}
    }
    return {
        "minutes": minutes,
        "rate_tps": rate,
        "tasks": len(sent),
        "results_seen": len(ends.seen),
        "lost": len(sent) - len(ends.seen),
        "failed": failed,
        "max_backlog": max(count for _, count in backlog),
        "backlog": backlog,
        "warm_up_s": warm_up,
        "windows_filled_s": filled,
        "rss": _rss_after(samples, {name: started + at for name, at in warm_up.items()}),
        "rss_samples_mib": [
            (round(at - started, 1), name, round(rss / 2**20, 1)) for at, name, rss in samples
        ],
    }


def warm_up_s(elapsed: float, filled_s: float | None) -> float:
    """Seconds of a process's memory left out of the figures: the WARM_UP share of the run, or
    until its window of attempts filled (``filled_s``) if later and the run goes on for a
    WARM_UP share after it (a shorter run's figures include the filling)."""
    share = WARM_UP * elapsed
    if filled_s is not None and share < filled_s <= (1 - WARM_UP) * elapsed:
        return filled_s
    return share


def windows_filled_at(done: dict[str, list[float]], started: float) -> dict[str, float]:
    """Per agent that ran at least ``SEEN_ATTEMPTS`` tasks: seconds from ``started`` to its
    ``SEEN_ATTEMPTS``-th task done (``done``: when each agent's tasks were done, on
    ``time.monotonic()``, as ``PipelineRun.by_agent(ends.done)`` gives them)."""
    return {
        agent: sorted(ends)[SEEN_ATTEMPTS - 1] - started
        for agent, ends in done.items()
        if len(ends) >= SEEN_ATTEMPTS
    }


def _rss_after(
    samples: list[tuple[float, str, int]], after: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Per process, from its ``after`` on: the median RSS (MiB) and the lowest and highest
    samples as a share off it, and whether all stay within FLAT."""
    by_name: dict[str, list[int]] = {}
    for at, name, rss in samples:
        if at >= after[name]:
            by_name.setdefault(name, []).append(rss)
    figures = {}
    for name, values in sorted(by_name.items()):
        median = statistics.median(values)
        low, high = min(values) / median - 1, max(values) / median - 1
        figures[name] = {
            "median_mib": median / 2**20,
            "low": low,
            "high": high,
            "flat": low >= -FLAT and high <= FLAT,
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskd_lab.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=500.0, help="tasks per second")
    parser.add_argument("--out", type=Path, default=Path("out/soak"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = BenchPlan(work_dir=args.out / "work", base=load_settings())
    report = run_soak(plan, minutes=args.minutes, rate=args.rate, progress=print)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    flat = all(entry["flat"] for entry in report["rss"].values())
    print(
        f"{report['tasks']:,} tasks at {args.rate:g}/s over {args.minutes:g} min: "
        f"{report['lost']} lost, max backlog {report['max_backlog']:,}, "
        f"RSS {'flat' if flat else 'NOT flat'} within ±{FLAT:.0%} after each one's warm-up"
    )
    for name, entry in report["rss"].items():
        print(
            f"  {name}: median {entry['median_mib']:.0f} MiB, "
            f"{entry['low']:+.1%} .. {entry['high']:+.1%} after {report['warm_up_s'][name]:.0f} s"
        )
    return 0 if report["lost"] == 0 and flat else 1


if __name__ == "__main__":
    sys.exit(main())
