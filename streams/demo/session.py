"""``taskd demo``: the reference workload through Kafka with the default strategy, then the same
workload with the round-robin push baseline; the summary, the JSON and the PNG report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from streams.demo import report
from streams.demo.fleet import AgentSpec
from streams.demo.live import live_view
from streams.demo.run import Plan, run_plan
from streams.demo.sandbox import check_broker
from streams.demo.workload import DEMO_FLEET, KILLED, RATE_PER_S, Workload, reference_workload
from streams.settings import Settings

STRATEGY = "affinity"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    tasks: int = 45_000
    seed: int = 42
    out_dir: Path = Path("out/demo")
    baseline: bool = True
    rate_per_s: float = RATE_PER_S
    fleet: tuple[AgentSpec, ...] = field(default=DEMO_FLEET)

    @property
    def strategies(self) -> tuple[str, ...]:
        return (STRATEGY, report.BASELINE) if self.baseline else (STRATEGY,)


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> dict[str, Any]:
    """Run every strategy, print the summary and the table, write the reports; the report."""
    check_broker(settings)
    began = time.monotonic()
    workload = reference_workload(options.tasks, seed=options.seed, rate_per_s=options.rate_per_s)
    console.print(_intro(workload, options), highlight=False)
    runs: dict[str, dict[str, Any]] = {}
    for strategy in options.strategies:
        plan = Plan(
            strategy=strategy,
            workload=workload,
            fleet=options.fleet,
            log_dir=options.out_dir / "logs" / strategy,
            killed=KILLED,
        )
        console.print(f"[bold]{strategy}[/bold]: starting the dispatcher and the agents ...")
        with live_view(console) as show:
            runs[strategy] = run_plan(settings, plan, show)
        console.print(f"[bold]{strategy}[/bold]: done in {runs[strategy]['wall_ms'] / 1000:.0f} s")
    summary = report.sentence(STRATEGY, runs)
    result = {
        "summary": summary,
        "workload": _workload_dict(workload, options),
        "runs": runs,
        "wait_cut": report.wait_cut(runs[STRATEGY], runs[report.BASELINE])
        if options.baseline
        else None,
        "wall_s": round(time.monotonic() - began, 1),
    }
    json_path, png_path = report.write(options.out_dir, result)
    console.print(report.table(runs))
    console.print(summary, style="bold", highlight=False)
    console.print(f"figures: {json_path}   report: {png_path}   logs: {options.out_dir / 'logs'}")
    return result


def _intro(workload: Workload, options: DemoOptions) -> str:
    slots = sum(spec.capacity for spec in options.fleet)
    return (
        f"The reference workload: {len(workload.arrivals):,} tasks in four priority levels at "
        f"{options.rate_per_s:g} tasks/s ({workload.load:.0%} of the capacity of "
        f"{len(options.fleet)} agents, {slots} slots); {KILLED} is killed half way. "
        f"Strategies: {', '.join(options.strategies)}."
    )


def _workload_dict(workload: Workload, options: DemoOptions) -> dict[str, Any]:
    return {
        "tasks": len(workload.arrivals),
        "rate_per_s": options.rate_per_s,
        "load": workload.load,
        "speedup": round(workload.speedup, 3),
        "seed": workload.seed,
        "killed": KILLED,
        "fleet": [
            {
                "agent_id": spec.agent_id,
                "capacity": spec.capacity,
                "speed": spec.speed,
                "skills": list(spec.skills),
                "zone": spec.zone,
                "fail_rate": spec.fail_rate,
            }
            for spec in options.fleet
        ],
    }
