"""The sizes of one ``taskd bench`` and what each section needs to run in isolation: its own
topic prefix, state directory and the environment its child processes get."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.settings import Settings, load_settings
from taskd_lab.procs import free_port

SECTIONS = ("pipeline", "results", "group", "floor", "memory", "peers", "quality")
"""The sections of ``taskd bench``, in the order they run."""
Progress = Callable[[str], None]
"""Tells the user what a section is doing now (one short line)."""

PAYLOAD = json.dumps({"work_ms": 0}).encode()
"""The no-op task's payload, for the demo handler: every benchmark record carries it."""
TASK_TYPE = "bench"
PRIORITY = 1
DEMO_HANDLER = "streams.examples:work"
DEFAULT_TASKS = 100_000
"""Tasks per throughput run: tens of seconds of our pipeline, long enough that its start and
its end weigh little."""
QUICK_TASKS = 3_000


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchPlan:
    """How big each run is. ``tasks``: records per throughput run, the same for every system
    (ours, each floor, each peer)."""

    tasks: int = DEFAULT_TASKS
    agents: int = 4
    capacity: int = 16
    """Slots per agent: with no-op work, enough in flight to keep the dispatcher busy."""
    fractions: tuple[float, ...] = (0.25, 0.5, 0.9)
    """Paced rates as fractions of our measured maximum."""
    paced_seconds: float = 12.0
    """Length of one paced run (bounded by ``tasks`` records)."""
    sustain_seconds: float = 60.0
    """Length of one probe for the sustained rate: long enough for a slowly growing backlog
    to show."""
    sustain_probes: int = 5
    sustain_p99_ms: float = 50.0
    """The highest end-to-end p99 (due -> result seen) at a sustained rate."""
    waiting: int = 100_000
    """Tasks submitted with no agent free, for the dispatcher's memory while holding them."""
    group_rounds: int = 3
    """Rounds of the ``group`` section: one dispatcher and two instances, each round side by
    side (see ``taskd_lab.bench.group``)."""
    quality_tasks: int = 12_000
    """Tasks per quality run: at 200/s a minute of steady state, so the ramp-up at the start and
    the drain at the end weigh little on utilization and load CV."""
    timeout_s: float = 180.0
    """Longest wait for the next of one run's records; past it the section fails."""
    work_dir: Path
    base: Settings
    """The user's settings: the broker and partition counts; prefixes are made per section."""

    @classmethod
    def quick(cls, *, work_dir: Path, base: Settings, tasks: int | None = None) -> BenchPlan:
        """A small plan for a first look (a few minutes)."""
        return cls(
            tasks=tasks or QUICK_TASKS,
            paced_seconds=4.0,
            sustain_seconds=8.0,
            waiting=20_000,
            quality_tasks=400,
            timeout_s=120.0,
            work_dir=work_dir,
            base=base,
        )


def section_settings(plan: BenchPlan, section: str) -> Settings:
    """Settings of one section: the user's broker, a fresh topic prefix and state directory."""
    tag = uuid.uuid4().hex[:8]
    state = plan.work_dir / f"{section}-{tag}"
    state.mkdir(parents=True, exist_ok=True)
    return load_settings(
        bootstrap_servers=plan.base.bootstrap_servers,
        topic_prefix=f"bench{tag}.{section}.",
        shards=plan.base.shards,
        dispatch_partitions=max(plan.base.dispatch_partitions, plan.agents),
        priority_levels=plan.base.priority_levels,
        data_dir=state / "state",
        http_port=free_port(),  # never the default 6066 another dispatcher may hold
        agent_metrics_port=0,  # any free port, so agents never collide
    )
