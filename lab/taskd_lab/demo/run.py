"""One run of a strategy through the real pipeline, and the demo: both strategies, the report.

A run: its own topics and state (``sandbox``), the dispatcher and the agents (``Fleet``), the
reader of what happens (``Observer``), the paced submitter; half way through the arrivals one
agent is killed with SIGKILL. It ends when every task has a final outcome, or ``drain_s`` after
the last submission (what is left then counts as not completed).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.settings import Settings
from taskd_lab.demo.figures import RunRecords, compute
from taskd_lab.demo.fleet import AgentSpec, Fleet
from taskd_lab.demo.observe import Observer, Snapshot
from taskd_lab.demo.sandbox import sandbox
from taskd_lab.demo.submitter import Submitter, now_ms
from taskd_lab.demo.workload import Workload

_TICK_S = 0.25
MIN_DRAIN_S = 30.0
"""Long enough for the slowest path a task of the demo can take after the last submission:
two failed attempts through the 1 s and 10 s retry tiers, a failover after 3 s of silence, on a
busy machine. At 15 s a small demo under load twice ended with one task unsettled."""

Show = Callable[["Progress"], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run does."""

    strategy: str
    workload: Workload
    fleet: tuple[AgentSpec, ...]
    log_dir: Path
    killed: str | None = None
    """The agent SIGKILLed half way through the arrivals; None: nobody."""
    drain_s: float | None = None
    """How long to wait after the last submission; None: a tenth of the arrivals' span (at
    least ``MIN_DRAIN_S``). A strategy that keeps up settles within seconds of the last
    submission; what a baseline leaves waiting longer counts as not completed, and its wait as
    lasting to the end of the run."""

    @property
    def drain_limit_s(self) -> float:
        if self.drain_s is not None:
            return self.drain_s
        return max(MIN_DRAIN_S, self.workload.span_ms / 10_000)


@dataclass(frozen=True, slots=True)
class Progress:
    """What the live view shows, every tick."""

    plan: Plan
    snapshot: Snapshot
    elapsed_s: float
    killed: bool
    phase: str


def run_plan(settings: Settings, plan: Plan, show: Show | None = None) -> dict[str, Any]:
    """Run ``plan`` through Kafka; its figures (``taskd_lab.demo.figures.compute``)."""
    with (
        sandbox(settings, plan.strategy) as run_settings,
        Fleet(
            run_settings, strategy=plan.strategy, agents=plan.fleet, log_dir=plan.log_dir
        ) as fleet,
    ):
        fleet.start()
        with Observer(run_settings) as observer:
            submitter = Submitter(run_settings, plan.workload, observer)
            submitter.start()
            try:
                killed_at = _watch(plan, fleet, observer, submitter, show or _quiet)
            finally:
                submitter.stop()
            end_ms = now_ms()
            observer.catch_up()
            records = RunRecords(
                tasks=dict(observer.tasks),
                assignments=list(observer.assignments),
                results=list(observer.results),
                dead_letters=list(observer.dead_letters),
                capacities={spec.agent_id: spec.capacity for spec in plan.fleet},
                start_ms=submitter.start_ms,
                end_ms=end_ms,
                killed=killed_at,
            )
    return compute(records, levels=settings.priority_levels)


def _watch(
    plan: Plan, fleet: Fleet, observer: Observer, submitter: Submitter, show: Show
) -> dict[str, int]:
    """Tick until every task is settled or the drain time is over; kill half way."""
    started = time.monotonic()
    killed: dict[str, int] = {}
    count = len(plan.workload.arrivals)
    drained_by: float | None = None
    while True:
        fleet.check()
        submitter.check()
        elapsed_s = time.monotonic() - started
        if plan.killed and not killed and elapsed_s * 1000 >= plan.workload.span_ms / 2:
            fleet.kill(plan.killed)
            killed[plan.killed] = now_ms()
        snapshot = observer.snapshot()
        if submitter.finished.is_set() and drained_by is None:
            drained_by = time.monotonic() + plan.drain_limit_s
        phase = "submitting" if drained_by is None else "draining"
        show(Progress(plan, snapshot, elapsed_s, bool(killed), phase))
        if drained_by is not None and (snapshot.settled >= count or time.monotonic() > drained_by):
            return killed
        time.sleep(_TICK_S)


def _quiet(_progress: Progress) -> None:
    """A live view that shows nothing."""


def scratch_logs(name: str) -> Path:
    """A fresh directory for one run's process logs, outside the repository."""
    return Path(tempfile.mkdtemp(prefix=f"taskd-{name}-logs-"))
