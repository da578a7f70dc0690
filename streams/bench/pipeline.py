"""Our pipeline, end to end, as an operator runs it: ``taskd dispatcher`` and ``taskd agent``
child processes, tasks from :class:`~streams.client.TaskClient` in this process.

Throughput: ``plan.tasks`` no-op tasks submitted as fast as the client takes them, completions
counted on ``results`` (steady rate over the middle of the run). Latency: paced runs at
fractions of that maximum; *dispatch* is submitted -> the assignment seen on ``dispatch``,
*end to end* is submitted -> the result seen on ``results`` (see :mod:`streams.bench.measure`).
The dispatcher's and the agents' RSS are sampled throughout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from confluent_kafka import Message

from streams.adapters.admin import create_topics, delete_topics
from streams.adapters.client import TaskClient
from streams.bench.measure import (
    Observer,
    blast,
    latency,
    paced,
    paced_count,
    run_ids,
    throughput,
)
from streams.bench.plan import (
    DEMO_HANDLER,
    PAYLOAD,
    PRIORITY,
    TASK_TYPE,
    BenchPlan,
    Progress,
    section_settings,
)
from streams.bench.procs import RssSampler
from streams.procs import Child, Children, taskd_command
from streams.settings import Settings, child_environment
from streams.wire import AssignmentBatch, Codec, ResultBatch, Task, TaskStatus

WARMUP = 200
READY_S = 90.0


def run_pipeline(
    plan: BenchPlan,
    progress: Progress,
    *,
    extra_rates: Sequence[float] = (),
    strategy: str | None = None,
) -> dict[str, Any]:
    """Throughput, latency at ``plan.fractions`` of it (and at ``extra_rates``), memory."""
    settings = section_settings(plan, "pipeline")
    create_topics(settings)
    try:
        with Children(settings.data_dir.parent / "logs", child_environment(settings)) as children:
            dispatcher = start_dispatcher(children, strategy=strategy)
            agents = start_agents(children, plan.agents, plan.capacity)
            pids = {"dispatcher": dispatcher.pid} | {a.name: a.pid for a in agents}
            with RssSampler(pids) as rss, _Run(settings, plan) as run:
                figures = _measure(run, plan, progress, extra_rates)
            children.check_alive()
        figures["rss"] = _rss_figures(rss)
        return figures
    finally:
        delete_topics(settings)


def start_dispatcher(
    children: Children, *, max_held: int | None = None, strategy: str | None = None
) -> Child:
    """``taskd dispatcher`` as a child; returns once it says it is ready."""
    argv = [*taskd_command(), "dispatcher", "--loglevel", "info", "--lease-ms", "120000"]
    if max_held is not None:
        argv += ["--max-held", str(max_held)]
    if strategy is not None:
        argv += ["--strategy", strategy]
    dispatcher = children.start("dispatcher", argv)
    dispatcher.wait_for_log("dispatcher ready", READY_S)
    return dispatcher


def start_agents(children: Children, count: int, capacity: int) -> list[Child]:
    """``count`` agents ``bench-a<i>`` running the demo handler; once each has its partition."""
    agents = [
        children.start(
            f"agent-{i}",
            [
                *taskd_command(),
                "agent",
                *("--id", f"bench-a{i}", "--capacity", str(capacity)),
                *("--handler", DEMO_HANDLER, "--heartbeat-ms", "500"),
            ],
        )
        for i in range(count)
    ]
    for agent in agents:
        agent.wait_for_log(" ready: partition", READY_S)
    return agents


class _Run:
    """The client and the observer of one pipeline section, and the results' statuses."""

    def __init__(self, settings: Settings, plan: BenchPlan) -> None:
        self.settings = settings
        self.plan = plan
        self.codec = Codec()
        self.failed = 0
        self.topics = settings.topics
        self.client = TaskClient(settings)
        self.observer = Observer(
            settings,
            (self.topics.dispatch, self.topics.results),
            on_message=self._status,
            keys_of=self._task_ids,
        )

    def __enter__(self) -> _Run:
        self.observer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.client.close(10)
        finally:
            self.observer.__exit__(*exc)

    def _status(self, message: Message) -> None:
        if message.topic() == self.topics.results:
            batch = self.codec.decode(message.value() or b"", ResultBatch)
            self.failed += sum(1 for r in batch.results if r.status is not TaskStatus.SUCCEEDED)

    def _task_ids(self, message: Message) -> list[str]:
        value = message.value() or b""
        if message.topic() == self.topics.results:
            return [r.task_id for r in self.codec.decode(value, ResultBatch).results]
        return [a.task.task_id for a in self.codec.decode(value, AssignmentBatch).assignments]

    def send(self, task_id: str) -> None:
        now_ms = time.time_ns() // 1_000_000
        task = Task(
            task_id=task_id,
            type=TASK_TYPE,
            priority=PRIORITY,
            payload=PAYLOAD,
            submitted_at=now_ms,
        )
        self.client.submit(task)

    def flush(self) -> None:
        self.client.flush(self.plan.timeout_s)

    def done(self, ids: list[str]) -> tuple[dict[str, float], dict[str, float]]:
        """(dispatch, results) arrival times once every id has a result."""
        results = self.observer.wait_for(self.topics.results, set(ids), self.plan.timeout_s)
        return self.observer.arrived(self.topics.dispatch, ids), results


def _measure(
    run: _Run, plan: BenchPlan, progress: Progress, extra_rates: Sequence[float]
) -> dict[str, Any]:
    progress(f"pipeline: warm-up ({WARMUP} tasks)")
    warm = run_ids(WARMUP, "warm")
    blast(run.send, run.flush, warm)
    run.done(warm)
    progress(f"pipeline: max throughput ({plan.tasks:,} tasks as fast as possible)")
    ids = run_ids(plan.tasks, "max")
    sent = blast(run.send, run.flush, ids)
    run.done(ids)
    best = throughput(run.observer.written(run.topics.results, ids).values())
    submit_s = max(sent.values()) - min(sent.values())
    rates = [round(best.tps * fraction, 1) for fraction in plan.fractions]
    figures: dict[str, Any] = {
        "throughput_tps": best.tps,
        "throughput_tasks": best.count,
        "submit_tps": (len(sent) - 1) / submit_s if submit_s > 0 else None,
        "latency": [paced_run(run, plan, progress, rate) for rate in rates],
        "at_rates": [_at_rate(run, plan, progress, rate, best.tps) for rate in extra_rates],
    }
    figures["failed"] = run.failed
    return figures


def paced_run(run: _Run, plan: BenchPlan, progress: Progress, rate: float) -> dict[str, Any]:
    """Dispatch and end-to-end latency of one open-loop run at ``rate`` tasks/s."""
    count = paced_count(rate, plan.paced_seconds, plan.tasks)
    progress(f"pipeline: {count:,} tasks paced at {rate:,.0f}/s")
    ids = run_ids(count, f"r{rate:g}")
    due = paced(run.send, run.flush, ids, rate)
    dispatched, results = run.done(ids)
    return {
        "rate_tps": rate,
        "dispatch": asdict(latency(due, dispatched, rate)),
        "e2e": asdict(latency(due, results, rate)),
    }


def _at_rate(
    run: _Run, plan: BenchPlan, progress: Progress, rate: float, best_tps: float
) -> dict[str, Any]:
    """A paced run at a peer's rate, unless that is beyond our maximum (a queue that only
    grows has no steady latency to report)."""
    if rate > best_tps:
        return {"rate_tps": rate, "skipped": f"above our maximum ({best_tps:,.0f}/s)"}
    return paced_run(run, plan, progress, rate)


def _rss_figures(rss: RssSampler) -> dict[str, int]:
    agents = [peak for name, peak in rss.peak.items() if name.startswith("agent")]
    return {
        "dispatcher_peak_bytes": rss.peak.get("dispatcher", 0),
        "agent_peak_bytes": max(agents, default=0),
    }
