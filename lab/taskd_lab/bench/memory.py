"""The dispatcher's memory while it holds many tasks no agent is free to take.

A ``taskd dispatcher`` child with ``--max-held`` equal to ``plan.waiting``, no agent, and
``plan.waiting`` no-op tasks submitted: once it holds all of them it pauses the task topics
and says so in its log ("task topics paused"); its peak RSS then is the figure. Its RSS when
ready and idle is the baseline. (The steady-state figures come from the pipeline section.)
"""

from __future__ import annotations

import time
from typing import Any

from streams.adapters.admin import create_topics, delete_groups, delete_topics
from streams.adapters.client import TaskClient
from streams.settings import child_environment
from streams.wire import Task
from taskd_lab.bench.ours import start_dispatcher
from taskd_lab.bench.plan import (
    PAYLOAD,
    PRIORITY,
    TASK_TYPE,
    BenchPlan,
    Progress,
    section_settings,
)
from taskd_lab.bench.procs import RssSampler, process_rss
from taskd_lab.procs import Children

PAUSED = "task topics paused"


def run_memory(plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    """Dispatcher RSS idle, and at its peak while holding ``plan.waiting`` tasks."""
    settings = section_settings(plan, "memory")
    create_topics(settings)
    try:
        with Children(settings.data_dir.parent / "logs", child_environment(settings)) as kids:
            progress("memory: starting a dispatcher with no agent")
            dispatcher = start_dispatcher(kids, max_held=plan.waiting)
            time.sleep(1.0)
            idle = process_rss(dispatcher.pid) or 0
            with RssSampler({"dispatcher": dispatcher.pid}) as rss:
                progress(f"memory: submitting {plan.waiting:,} tasks no agent can take")
                started = time.monotonic()
                _submit(settings_tasks=plan.waiting, client=TaskClient(settings))
                progress("memory: waiting until the dispatcher holds them all")
                dispatcher.wait_for_log(PAUSED, plan.timeout_s)
                held_s = time.monotonic() - started
                time.sleep(2.0)  # a few more samples at the plateau
            kids.check_alive()
        return {
            "waiting_tasks": plan.waiting,
            "dispatcher_idle_bytes": idle,
            "dispatcher_waiting_peak_bytes": rss.peak.get("dispatcher", 0),
            "seconds_to_hold_all": held_s,
            "bytes_per_held_task": (rss.peak.get("dispatcher", 0) - idle) / plan.waiting,
        }
    finally:
        delete_topics(settings)
        delete_groups(settings)  # the run's consumer groups too


def _submit(*, settings_tasks: int, client: TaskClient) -> None:
    with client:
        now_ms = time.time_ns() // 1_000_000
        for i in range(settings_tasks):
            client.submit(
                Task(
                    task_id=f"held-{i:08d}",
                    type=TASK_TYPE,
                    priority=PRIORITY,
                    payload=PAYLOAD,
                    submitted_at=now_ms,
                )
            )
