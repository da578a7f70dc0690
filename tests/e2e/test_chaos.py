"""The chaos run's short version (``python -m taskd_lab.chaos`` runs the long one): the
dispatcher killed with SIGKILL three times and an agent once while tasks flow, each replaced at
once. Nothing is lost, and dispatching resumes after every kill (24 s of sending leaves tasks
to dispatch after the third, even when each restart takes seconds on a busy machine); how many
tasks ran twice is printed (the long run's figures are in docs/guarantees.md)."""

from __future__ import annotations

import math
from pathlib import Path

from streams.settings import Settings
from taskd_lab.bench.plan import BenchPlan
from taskd_lab.chaos import run_chaos


def test_a_dispatcher_killed_three_times_and_an_agent_once_under_load_lose_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    plan = BenchPlan(work_dir=tmp_path, base=settings, agents=2, capacity=8, timeout_s=60)
    report = run_chaos(
        plan, tasks=2_400, rate=100, kills=3, work_ms=10, static=True, progress=print
    )
    print(f"ran twice: {report['ran_twice']}; resumed after each kill: {report['resumed_s']} s")
    assert report["tasks"] == 2_400 and report["lost"] == 0
    assert len(report["resumed_s"]) == 3
    assert all(math.isfinite(seconds) for seconds in report["resumed_s"])
