"""Results back to the producer: the ``results`` section of ``taskd bench``.

A paced run through the pipeline (``plan.agents`` agents, the no-op handler) whose client waits
for results (``TaskClient(results=True)``): each task names the client's partition of
``replies``, the dispatcher writes its outcome there when it ends, and the client's reader
resolves the task's handle. Per task, on this machine's wall clock:

- *written → caller*: from the outcome's ``ended_at`` (the dispatcher settled the task and
  writes the outcome in the same pass, so this counts the write, the broker and the read) to
  the moment the handle resolves, which is when a caller blocked in ``result()`` wakes;
- *done → caller*: from the agent finishing the task (the result's ``finished_at``): the
  dispatcher's hop included.

The rate is half the sustained rate the ``pipeline`` section found (half load), else
DEFAULT_RATE_TPS; ``ended_at`` and ``finished_at`` are whole milliseconds, counted mid-way.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

from streams.adapters.client import TaskClient
from streams.wire import TaskOutcome
from taskd_lab.bench.measure import paced, paced_count, percentile, run_ids
from taskd_lab.bench.ours import bench_task, running_pipeline
from taskd_lab.bench.plan import BenchPlan, Progress
from taskd_lab.bench.procs import BenchError

DEFAULT_RATE_TPS = 500.0
HALF_MS = 0.5


class _Arrivals:
    """When each handle resolved (wall clock, ms), noted by the client's reader thread."""

    def __init__(self) -> None:
        self.at: dict[str, tuple[float, TaskOutcome]] = {}
        self._lock = threading.Lock()
        self.all_in = threading.Event()
        self.expected = 0

    def note(self, future: futures.Future[TaskOutcome]) -> None:
        now_ms = time.time() * 1000
        outcome = future.result()
        with self._lock:
            self.at.setdefault(outcome.task_id, (now_ms, outcome))
            if len(self.at) >= self.expected:
                self.all_in.set()


def run_results(plan: BenchPlan, progress: Progress, sustained_tps: float | None) -> dict[str, Any]:
    """The paced run and its two latencies (see the module docstring)."""
    rate = sustained_tps / 2 if sustained_tps else DEFAULT_RATE_TPS
    ids = run_ids(paced_count(rate, plan.paced_seconds, plan.tasks), "results")
    progress(f"results: {len(ids):,} tasks at {rate:,.0f}/s, each waited for by its producer")
    arrivals = _Arrivals()
    arrivals.expected = len(ids)
    with (
        running_pipeline(plan, "results", observe=False) as pipeline,
        TaskClient(pipeline.run.settings, results=True) as client,
    ):

        def send(task_id: str) -> None:
            client.submit(bench_task(task_id)).waits.add_done_callback(arrivals.note)

        paced(send, lambda: client.flush(plan.timeout_s), ids, rate)
        if not arrivals.all_in.wait(plan.timeout_s):
            raise BenchError(f"results: {len(ids) - len(arrivals.at)} outcomes never arrived")
    outcomes = list(arrivals.at.values())
    return {
        "rate_tps": rate,
        "tasks": len(ids),
        "succeeded": sum(outcome.succeeded for _, outcome in outcomes),
        "written_to_caller_ms": _spread(at - o.ended_at - HALF_MS for at, o in outcomes),
        "done_to_caller_ms": _spread(
            at - (o.finished_at or o.ended_at) - HALF_MS for at, o in outcomes
        ),
    }


def _spread(values: Any) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 0.5),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1],
    }
