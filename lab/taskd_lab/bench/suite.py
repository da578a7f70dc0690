"""``taskd bench`` end to end: the chosen sections in order, each failing on its own.

Order: peers first (our pipeline then also runs at the rate each peer reached at half its
maximum, for a same-rate comparison), then our pipeline (its maximum sets the paced rates and
bounds the search for the sustained rate; a second throughput run with lifecycle events on
follows), results back to a producer waiting for them (at half the sustained rate), one
dispatcher against two instances of one group, the floor at those same paced
rates, the dispatcher's memory with tasks waiting,
and the distribution quality through the live pipeline. Every throughput run (ours, the
peers', the floor's) has the same ``plan.tasks`` tasks. A section that cannot run (a
TaskdError: Redis missing for the peers, a child that died) is reported as skipped with its
message; the others still run.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from streams.errors import TaskdError
from taskd_lab.bench.plan import BenchPlan, Progress, section_settings
from taskd_lab.bench.procs import BenchError
from taskd_lab.bench.report import machine, versions

QUALITY_RUNS = (
    ("affinity", 0.9),
    ("round-robin-push", 0.9),
    ("affinity", 1.2),
    ("round-robin-push", 1.2),
)
"""(strategy, load) of each quality run: our default against the naive push baseline."""


def run_suite(
    plan: BenchPlan, sections: Sequence[str], progress: Progress, *, command: str
) -> dict[str, Any]:
    """Run ``sections`` (in the suite's order) and return the report's JSON document."""
    started = time.monotonic()
    doc: dict[str, Any] = {
        "command": command,
        "started_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "plan": _plan_doc(plan),
        "sections": {},
    }
    results: dict[str, Any] = doc["sections"]
    if "peers" in sections:
        results["peers"] = _guarded(progress, "peers", lambda: _peers(plan, progress))
    if "pipeline" in sections:
        extra = _half_rates(results.get("peers"))
        results["pipeline"] = _guarded(
            progress, "pipeline", lambda: _pipeline(plan, progress, extra)
        )
    if "results" in sections:
        sustained = _sustained_rate(results.get("pipeline"))
        results["results"] = _guarded(
            progress, "results", lambda: _results(plan, progress, sustained)
        )
    if "group" in sections:
        results["group"] = _guarded(progress, "group", lambda: _group(plan, progress))
    if "floor" in sections:
        rates = _our_rates(results.get("pipeline"))
        results["floor"] = _guarded(progress, "floor", lambda: _floor(plan, progress, rates))
    if "memory" in sections:
        results["memory"] = _guarded(progress, "memory", lambda: _memory(plan, progress))
    if "quality" in sections:
        results["quality"] = _guarded(progress, "quality", lambda: _quality(plan, progress))
    doc["duration_s"] = time.monotonic() - started
    return doc


def _plan_doc(plan: BenchPlan) -> dict[str, Any]:
    fields = asdict(plan)
    fields.pop("base")
    fields["work_dir"] = str(plan.work_dir)
    return fields


def _guarded(progress: Progress, name: str, run: Callable[[], Any]) -> Any:
    try:
        return run()
    except TaskdError as error:
        progress(f"{name}: skipped: {error}")
        return {"skipped": str(error)}


def _pipeline(plan: BenchPlan, progress: Progress, extra: list[float]) -> dict[str, Any]:
    from taskd_lab.bench.pipeline import run_pipeline

    return run_pipeline(plan, progress, extra_rates=extra)


def _results(plan: BenchPlan, progress: Progress, sustained: float | None) -> dict[str, Any]:
    from taskd_lab.bench.results import run_results

    return run_results(plan, progress, sustained)


def _sustained_rate(pipeline: Any) -> float | None:
    if isinstance(pipeline, dict) and isinstance(pipeline.get("sustained"), dict):
        rate = pipeline["sustained"].get("rate_tps")
        return None if rate is None else float(rate)
    return None


def _group(plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    from taskd_lab.bench.group import run_group

    return run_group(plan, progress)


def _floor(plan: BenchPlan, progress: Progress, rates: list[float] | None) -> Any:
    from taskd_lab.bench.floor import run_floor

    return run_floor(plan, progress, rates)


def _memory(plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    from taskd_lab.bench.memory import run_memory

    return run_memory(plan, progress)


def _peers(plan: BenchPlan, progress: Progress) -> list[dict[str, object]]:
    """Celery and Dramatiq on Redis (``taskd_lab.bench.peers``), as many tasks as ours;
    ``concurrency`` is our number of agents: one worker process per agent process."""
    try:
        from taskd_lab.bench.peers import run_peers
    except ImportError as error:  # written separately: absent until it lands
        raise BenchError(f"taskd_lab.bench.peers is not available: {error}") from error

    progress("peers: Celery and Dramatiq on Redis")
    work_dir = plan.work_dir / "peers"
    work_dir.mkdir(parents=True, exist_ok=True)
    return run_peers(tasks=plan.tasks, concurrency=plan.agents, rates=None, work_dir=work_dir)


def _quality(plan: BenchPlan, progress: Progress) -> list[dict[str, object]]:
    try:
        from taskd_lab.demo.quality import measure_quality
    except ImportError as error:  # written separately: absent until it lands
        raise BenchError(f"taskd_lab.demo.quality is not available: {error}") from error

    runs = []
    for strategy, load in QUALITY_RUNS:
        progress(f"quality: {plan.quality_tasks:,} tasks, {strategy} at {load:.0%} load")
        settings = section_settings(plan, "quality")
        runs.append(
            measure_quality(settings, load=load, strategy=strategy, tasks=plan.quality_tasks)
        )
    return runs


def _half_rates(peers: Any) -> list[float]:
    """For each peer, the rate of its latency point nearest half its maximum."""
    if not isinstance(peers, list):
        return []
    rates = []
    for peer in peers:
        points = [p for p in peer.get("latency") or [] if p.get("rate_tps")]
        if points:
            half = float(peer["throughput_tps"]) / 2
            rates.append(float(min(points, key=lambda p: abs(p["rate_tps"] - half))["rate_tps"]))
    return rates


def _our_rates(pipeline: Any) -> list[float] | None:
    if isinstance(pipeline, dict) and "latency" in pipeline:
        return [float(point["rate_tps"]) for point in pipeline["latency"]]
    return None
