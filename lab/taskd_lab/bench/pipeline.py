"""Our pipeline, end to end, as an operator runs it (:mod:`taskd_lab.bench.ours`).

Throughput: ``plan.tasks`` no-op tasks submitted as fast as the client takes them; the rate is
the whole run, first send to the last task done (as for the peers), and to the last result
seen; the CPU each process used over it and the Kafka records written to each topic, per task.
Latency: paced runs at fractions of that maximum (and at the peers' rates), from when each
task was due to each end point. The sustained rate: the highest paced rate our pipeline keeps
up with at a low p99 (:mod:`taskd_lab.bench.sustained`). Then a second pipeline, the dispatcher
with lifecycle events on, for one throughput run: what the events cost. The dispatcher's and
the agents' RSS are sampled throughout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from taskd_lab.bench.cost import CostMeter, Usage, cpu_ms_per_task, records_per_task
from taskd_lab.bench.measure import blast, latency, paced, paced_count, run_ids, throughput
from taskd_lab.bench.ours import Pipeline, PipelineRun, running_pipeline
from taskd_lab.bench.plan import BenchPlan, Progress
from taskd_lab.bench.procs import RssSampler
from taskd_lab.bench.sustained import find_sustained

WARMUP = 200
SETTLE_S = 0.5
"""After the last result, before the topics' offsets are read: the dispatcher's checkpoint
(every 100 ms) writes the state of the tasks that ended."""


def run_pipeline(
    plan: BenchPlan,
    progress: Progress,
    *,
    extra_rates: Sequence[float] = (),
) -> dict[str, Any]:
    """Throughput and its cost, latency at ``plan.fractions`` of it (and at ``extra_rates``),
    the sustained rate, RSS; then throughput and cost again with lifecycle events on."""
    with running_pipeline(plan, "pipeline") as pipeline:
        figures = _measure(pipeline, plan, progress, extra_rates)
    figures["rss"] = _rss_figures(pipeline.rss)
    with running_pipeline(plan, "events", events=True) as pipeline:
        progress("pipeline: the dispatcher again, with lifecycle events (--events)")
        figures["with_events"] = throughput_run(pipeline, plan, progress)
    return figures


def _measure(
    pipeline: Pipeline, plan: BenchPlan, progress: Progress, extra_rates: Sequence[float]
) -> dict[str, Any]:
    run = pipeline.run
    best = throughput_run(pipeline, plan, progress)
    maximum = best["throughput_tps"]
    rates = [round(maximum * fraction, 1) for fraction in plan.fractions]
    return {
        "throughput": best,
        "latency": [paced_run(run, plan, progress, rate) for rate in rates],
        "at_rates": [_at_rate(run, plan, progress, rate, maximum) for rate in extra_rates],
        "sustained": find_sustained(run, plan, progress, maximum),
        "failed": run.failed(),
    }


def throughput_run(pipeline: Pipeline, plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    """A warm-up, then ``plan.tasks`` tasks as fast as the client takes them: rates to the last
    task done and to the last result seen, CPU and records per task."""
    run = pipeline.run
    warm_up(run, progress)
    progress(f"pipeline: max throughput ({plan.tasks:,} tasks as fast as possible)")
    ids = run_ids(plan.tasks, "max")
    before = pipeline.cost.read()
    sent = blast(run.send, run.flush, ids)
    ends = run.done(ids)
    after = _settled(pipeline.cost)
    first = min(sent.values())
    done = throughput(first, ends.done.values())
    submit_s = max(sent.values()) - first
    per_task = cpu_ms_per_task(before, after, plan.tasks)
    return {
        "tasks": done.count,
        "throughput_tps": done.tps,
        "seconds": done.seconds,
        "seen_tps": throughput(first, ends.seen.values()).tps,
        "submit_tps": (len(sent) - 1) / submit_s if submit_s > 0 else None,
        "cpu_ms_per_task": with_sums(per_task, pipeline),
        "agents": _per_agent(per_task, run, ids, pipeline.agents),
        "records_per_task": records_per_task(before, after, plan.tasks),
    }


def warm_up(run: PipelineRun, progress: Progress) -> None:
    """WARMUP tasks through the pipeline first, so that connections and caches are warm."""
    progress(f"pipeline: warm-up ({WARMUP} tasks)")
    warm = run_ids(WARMUP, "warm")
    blast(run.send, run.flush, warm)
    run.done(warm)


def _settled(cost: CostMeter) -> Usage:
    """The CPU used up to now (the last result), the records once the dispatcher's checkpoint
    has written what the run ended."""
    cpu = cost.cpu()
    time.sleep(SETTLE_S)
    return Usage(cpu_s=cpu, records=cost.records())


def with_sums(cpu: dict[str, float], pipeline: Pipeline) -> dict[str, float]:
    """The processes' CPU per task, the agents' summed under ``agents`` (each one is listed
    in ``agents`` of the run, with the tasks it ran), and with several dispatcher instances
    theirs under ``dispatchers`` too."""
    shown = {name: value for name, value in cpu.items() if name not in pipeline.agents}
    shown["agents"] = sum(cpu[name] for name in pipeline.agents)
    if len(pipeline.dispatchers) > 1:
        shown["dispatchers"] = sum(cpu[name] for name in pipeline.dispatchers)
    return shown


def _per_agent(
    cpu: dict[str, float], run: PipelineRun, ids: list[str], agents: list[str]
) -> list[dict[str, Any]]:
    """Each agent's CPU per task of the run, and per task it ran itself."""
    ran = run.ran_by(ids)
    total = len(ids)
    return [
        {
            "agent": name,
            "ran": ran[name],
            "cpu_ms_per_task": cpu[name],
            "cpu_ms_per_task_ran": cpu[name] * total / ran[name] if ran[name] else None,
        }
        for name in agents
    ]


def paced_run(run: PipelineRun, plan: BenchPlan, progress: Progress, rate: float) -> dict[str, Any]:
    """Latency of one open-loop run at ``rate`` tasks/s, from when each task was due to each
    end point."""
    count = paced_count(rate, plan.paced_seconds, plan.tasks)
    progress(f"pipeline: {count:,} tasks paced at {rate:,.0f}/s")
    ids = run_ids(count, f"r{rate:g}")
    due = paced(run.send, run.flush, ids, rate)
    ends = run.done(ids)
    return {
        "rate_tps": rate,
        "dispatch": asdict(latency(due, ends.dispatched, rate)),
        "done": asdict(latency(due, ends.done, rate)),
        "seen": asdict(latency(due, ends.seen, rate)),
    }


def _at_rate(
    run: PipelineRun, plan: BenchPlan, progress: Progress, rate: float, best_tps: float
) -> dict[str, Any]:
    """A paced run at a peer's rate, unless that is beyond our maximum (a queue that only
    grows has no steady latency to report)."""
    if rate > best_tps:
        return {"rate_tps": rate, "skipped": f"above our maximum ({best_tps:,.0f}/s)"}
    return paced_run(run, plan, progress, rate)


def _rss_figures(rss: RssSampler) -> dict[str, int]:
    agents = [peak for name, peak in rss.peak.items() if name != "dispatcher"]
    return {
        "dispatcher_peak_bytes": rss.peak.get("dispatcher", 0),
        "agent_peak_bytes": max(agents, default=0),
    }
