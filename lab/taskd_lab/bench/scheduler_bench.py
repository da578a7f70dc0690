"""How long one scheduler release and one offer take with many tasks held.

The scheduler holds ``held`` tasks over 4 levels, 4 tenants (weights 1, 1, 2, 4) and 5
constraint classes, a third of them with deadlines; their submission times spread over the
last two minutes, so aging steps come due during the run. Each timed release asks for one task
(``limit=1``) from a placer that always has a free slot; a new task is then offered (timed
apart), so the number held stays constant. Run ``python -m taskd_lab.bench.scheduler_bench``.
"""

from __future__ import annotations

import json
import random
import statistics
import time

from streams.core.model import Job
from streams.core.scheduling import Scheduler, SchedulerConfig

LEVELS = 4
TENANT_WEIGHTS = {"acme": 1.0, "globex": 1.0, "initech": 2.0, "umbrella": 4.0}
SKILL_SETS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"gpu"}),
    frozenset({"cpu"}),
    frozenset({"gpu", "cuda12"}),
    frozenset({"arm"}),
)
DEADLINE_SHARE = 0.33
SPREAD_MS = 120_000
"""Submission times are spread over this much time before the benchmark starts."""
START_MS = 1_000_000


class _AlwaysFree:
    """A placer with room for everything: the release cost is the scheduler's alone."""

    total_slots = 1_000_000
    free_slots = 1_000_000

    def place(self, job: Job) -> str:
        return "agent-0"


def bench_scheduler(held: int = 100_000, releases: int = 20_000, seed: int = 0) -> dict[str, float]:
    """Time ``releases`` single releases and as many offers with ``held`` tasks held.

    Returns ``release_median_us``, ``release_p99_us``, ``release_mean_us``, ``offer_median_us``,
    ``offer_p99_us``, ``offer_mean_us`` (offers while filling and at steady state), ``fill_s``
    and ``held`` at the end.
    """
    rng = random.Random(seed)
    scheduler = Scheduler(
        SchedulerConfig(levels=LEVELS, max_held=2 * held + 1, tenant_weights=TENANT_WEIGHTS)
    )
    offer_ns: list[int] = []
    fill_start_ns = time.perf_counter_ns()
    for index in range(held):
        offer_ns.append(_timed_offer(scheduler, _job(rng, index, START_MS), START_MS))
    fill_s = (time.perf_counter_ns() - fill_start_ns) / 1e9
    release_ns = _release_loop(scheduler, rng, held, releases, offer_ns)
    return {
        **_summary("release", release_ns),
        **_summary("offer", offer_ns),
        "fill_s": fill_s,
        "held": float(scheduler.held),
    }


def _release_loop(
    scheduler: Scheduler, rng: random.Random, first_id: int, releases: int, offer_ns: list[int]
) -> list[int]:
    placer = _AlwaysFree()
    release_ns: list[int] = []
    now_ms = START_MS
    for index in range(releases):
        now_ms += 1
        start_ns = time.perf_counter_ns()
        released = scheduler.release(now_ms, placer, limit=1)
        release_ns.append(time.perf_counter_ns() - start_ns)
        for item in released:
            scheduler.task_finished(item.job)
        job = _job(rng, first_id + index, now_ms)
        offer_ns.append(_timed_offer(scheduler, job, now_ms))
    return release_ns


def _timed_offer(scheduler: Scheduler, job: Job, now_ms: int) -> int:
    start_ns = time.perf_counter_ns()
    scheduler.offer(job, now_ms)
    return time.perf_counter_ns() - start_ns


def _job(rng: random.Random, index: int, now_ms: int) -> Job:
    submitted_ms = now_ms - rng.randrange(SPREAD_MS)
    has_deadline = rng.random() < DEADLINE_SHARE
    return Job(
        task_id=f"task-{index}",
        priority=rng.randrange(LEVELS),
        submitted_ms=submitted_ms,
        tenant=rng.choice(tuple(TENANT_WEIGHTS)),
        deadline_ms=now_ms + rng.randrange(60_000, 3_600_000) if has_deadline else None,
        required_skills=rng.choice(SKILL_SETS),
    )


def _summary(name: str, samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        f"{name}_median_us": statistics.median(ordered) / 1000,
        f"{name}_p99_us": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1000,
        f"{name}_mean_us": statistics.fmean(ordered) / 1000,
    }


if __name__ == "__main__":
    print(json.dumps(bench_scheduler(), indent=2))
