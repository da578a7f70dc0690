"""``taskd demo``: the reference workload through Kafka with the default strategy, then the same
workload with the round-robin push baseline; the summary, the JSON and the PNG report.

Right after the live run of the default strategy, the same plan (fleet, workload, strategy,
dispatcher settings, the kill) runs through the simulator (``simulated``, seconds) and the
report shows the live figures against the simulated ones, the gap and whether the goals hold
(``gap``); ``demo.json`` keeps them under ``simulated`` and ``gap``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from streams.settings import Settings
from taskd_lab.demo import gap, report
from taskd_lab.demo.fleet import AgentSpec
from taskd_lab.demo.live import live_view
from taskd_lab.demo.run import Plan, run_plan
from taskd_lab.demo.sandbox import check_broker
from taskd_lab.demo.simulated import simulate_plan
from taskd_lab.demo.workload import DEMO_FLEET, KILLED, RATE_PER_S, Workload, reference_workload

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
    workload = reference_workload(
        options.tasks, seed=options.seed, fleet=options.fleet, rate_per_s=options.rate_per_s
    )
    console.print(_intro(workload, options), highlight=False)
    runs: dict[str, dict[str, Any]] = {}
    simulated: dict[str, Any] = {}
    for strategy in options.strategies:
        plan = _plan(strategy, workload, options)
        runs[strategy] = _run_live(settings, plan, console)
        if strategy == STRATEGY:
            simulated = _simulate(settings, plan, console)
    summary = report.summary(STRATEGY, runs)
    result = {
        "summary": summary,
        "workload": _workload_dict(workload, options),
        "runs": runs,
        "wait_cut": report.wait_cut(runs[STRATEGY], runs[report.BASELINE])
        if options.baseline
        else None,
        "simulated": simulated,
        "gap": gap.compare(runs[STRATEGY], simulated["figures"]),
        "wall_s": round(time.monotonic() - began, 1),
    }
    json_path, png_path = report.write(options.out_dir, result)
    console.print(report.table(runs))
    # soft_wrap: one line whatever the console's width (80 columns when piped), so the
    # sentence can be grepped and pasted whole
    console.print(summary["sentence"], style="bold", highlight=False, soft_wrap=True)
    _print_gap(console, result)
    console.print(f"figures: {json_path}   report: {png_path}   logs: {options.out_dir / 'logs'}")
    return result


def _plan(strategy: str, workload: Workload, options: DemoOptions) -> Plan:
    return Plan(
        strategy=strategy,
        workload=workload,
        fleet=options.fleet,
        log_dir=options.out_dir / "logs" / strategy,
        killed=KILLED,
    )


def _run_live(settings: Settings, plan: Plan, console: Console) -> dict[str, Any]:
    """One strategy through Kafka, with the live view; its figures."""
    console.print(f"[bold]{plan.strategy}[/bold]: starting the dispatcher and the agents ...")
    with live_view(console) as show:
        figures = run_plan(settings, plan, show)
    console.print(f"[bold]{plan.strategy}[/bold]: done in {figures['wall_ms'] / 1000:.0f} s")
    return figures


def _simulate(settings: Settings, plan: Plan, console: Console) -> dict[str, Any]:
    """The same plan through the simulator (``simulated.simulate_plan``)."""
    console.print(f"[bold]{plan.strategy}[/bold]: the same fleet and workload, simulated ...")
    simulated = simulate_plan(plan, settings)
    console.print(f"[bold]{plan.strategy}[/bold]: simulated in {simulated['seconds']:.1f} s")
    return simulated


def _print_gap(console: Console, result: dict[str, Any]) -> None:
    """The live run against the simulated one, the goals, and what the simulation is."""
    console.print(gap.table(result["gap"], STRATEGY))
    for line in gap.goal_lines(result["gap"]):
        console.print(line, highlight=False)
    console.print(gap.model_line(result["simulated"]["model"]), highlight=False)


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
