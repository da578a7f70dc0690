"""CPU per task of every process at paced rates: what a task costs when it comes alone.

    python -m taskd_lab.bench.paced_cost --rates 250,500,1000,2000 --seconds 30

The bench's pipeline (``taskd dispatcher``, ``plan.agents`` agents of ``plan.capacity`` slots,
the no-op task, this process sending and observing) is fed each rate in turn, open loop, for
``--seconds``, after a warm-up. For each rate it reports every process's CPU (user + system) per
task and as a share of one core, their sum, and the p50 / p99 from when a task was due to its
result seen. ``taskd bench`` gives the same CPU per task for a blast, where records arrive
many at a time; here they arrive one by one, and each pays for a whole pass of every process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streams.settings import load_settings
from taskd_lab.bench.cost import cpu_ms_per_task
from taskd_lab.bench.measure import latency, paced, paced_count, run_ids
from taskd_lab.bench.ours import Pipeline, running_pipeline
from taskd_lab.bench.pipeline import warm_up, with_sums
from taskd_lab.bench.plan import BenchPlan, Progress

AGENTS = "agents"
"""Every agent process together, in the figures (``pipeline.with_sums``)."""
MOST_TASKS = 1_000_000


def run_paced_cost(
    plan: BenchPlan, rates: list[float], seconds: float, progress: Progress
) -> list[dict[str, Any]]:
    """One row per rate (module docstring), in the order given."""
    with running_pipeline(plan, "paced-cost") as pipeline:
        warm_up(pipeline.run, progress)
        return [_one_rate(pipeline, rate, seconds, progress) for rate in rates]


def _one_rate(
    pipeline: Pipeline, rate: float, seconds: float, progress: Progress
) -> dict[str, Any]:
    run = pipeline.run
    ids = run_ids(paced_count(rate, seconds, MOST_TASKS), f"paced{rate:g}")
    progress(f"paced cost: {len(ids):,} tasks at {rate:,.0f}/s")
    before = pipeline.cost.read()
    due = paced(run.send, run.flush, ids, rate)
    ends = run.done(ids)
    per_task = cpu_ms_per_task(before, pipeline.cost.read(), len(ids))
    seconds_run = max(ends.seen.values()) - min(due.values())
    seen = latency(due, ends.seen, rate)
    total_ms = sum(per_task.values())
    shown = with_sums(per_task, pipeline)
    return {
        "rate_tps": rate,
        "tasks": len(ids),
        "cpu_ms_per_task": shown,
        "cores": {name: ms * len(ids) / 1000 / seconds_run for name, ms in shown.items()},
        "total_ms_per_task": total_ms,
        "total_cores": total_ms * len(ids) / 1000 / seconds_run,
        "p50_ms": seen.p50_ms,
        "p99_ms": seen.p99_ms,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table: CPU ms per task (share of a core) of each process."""
    names = list(rows[0]["cpu_ms_per_task"])
    lines = [
        f"| rate/s | {' | '.join(names)} | all of them | p50 / p99 ms, due → seen |",
        "|---" * (len(names) + 3) + "|",
    ]
    for row in rows:
        cells = [f"{row['cpu_ms_per_task'][name]:.3f} ({row['cores'][name]:.0%})" for name in names]
        total = f"{row['total_ms_per_task']:.3f} ({row['total_cores']:.0%})"
        wait = f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f}"
        lines.append(f"| {row['rate_tps']:,.0f} | {' | '.join(cells)} | {total} | {wait} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskd_lab.bench.paced_cost", description=__doc__
    )
    parser.add_argument("--rates", default="250,500,1000,2000", help="tasks/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each rate's run")
    parser.add_argument("--out", type=Path, default=Path("out/paced-cost"))
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    plan = BenchPlan(work_dir=args.out / "work", base=load_settings())
    rows = run_paced_cost(plan, rates, args.seconds, progress=print)
    (args.out / "paced-cost.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("CPU ms per task (share of one core) of each process:")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
