"""Delivery quality of one strategy at one load, measured through the real pipeline (for
``taskd bench``): the demo's heterogeneous fleet, the reference mix, no crash."""

from __future__ import annotations

import shutil

from streams.settings import Settings
from taskd_lab.demo.run import Plan, run_plan, scratch_logs
from taskd_lab.demo.workload import DEMO_FLEET, reference_workload


def measure_quality(
    settings: Settings, *, load: float, strategy: str, tasks: int
) -> dict[str, object]:
    """One run of ``tasks`` at ``load`` x the fleet's capacity with ``strategy``; its figures.

    Uses ``settings``' broker; the run gets its own topic prefix and data dir (removed after).
    """
    log_dir = scratch_logs(f"quality-{strategy}")
    try:
        workload = reference_workload(tasks, load=load)
        plan = Plan(strategy=strategy, workload=workload, fleet=DEMO_FLEET, log_dir=log_dir)
        figures = run_plan(settings, plan)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    queue = figures["queue_ms"]
    return {
        "load": load,
        "strategy": strategy,
        "mean_queue_ms": queue["mean"],
        "p99_queue_ms": queue["p99"],
        "mean_wait_all_ms": figures["mean_wait_all_ms"],
        "deadline_success": figures["deadline_success"],
        "load_cv": figures["load_cv"],
        "utilization": figures["utilization"],
        "inversions": figures["inversions"],
        "completed": figures["completed"],
        "tasks": figures["tasks"],
    }
