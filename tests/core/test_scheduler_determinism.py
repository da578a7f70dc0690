"""Same inputs, same outputs: in one process, and across processes whatever the hash seed.
Also: the scheduler stays pure (standard library only, no clock, no randomness)."""

from __future__ import annotations

import hashlib
import math
import os
import random
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.model import Job
from streams.core.scheduling import Scheduler, SchedulerConfig
from taskd_lab.bench.scheduler_bench import bench_scheduler
from tests.core.test_scheduler_fakes import Fleet, agent

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "streams" / "core" / "scheduling"
SKILL_SETS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"gpu"}),
    frozenset({"gpu", "cuda"}),
    frozenset({"arm"}),
)
CONFIG = SchedulerConfig(
    levels=4,
    aging_ms=50,
    escalation_ms=30,
    max_held=15,
    tenant_weights={"a": 1.0, "b": 3.0},
    tenant_max_in_flight={"c": 2},
    tenant_max_rate_per_s={"b": 20.0},
    reserved_top_share=0.25,
    no_capable_agent_timeout_ms=200,
)


def transcript(seed: int, steps: int = 600) -> str:
    """Everything the scheduler answers in a seeded random run, as one string."""
    rng = random.Random(seed)
    scheduler = Scheduler(CONFIG)
    fleet = Fleet(agent(f"n{i}", rng.randint(1, 3), rng.choice(SKILL_SETS)) for i in range(4))
    running: list[tuple[Job, str]] = []
    out: list[object] = []
    now_ms = 0
    for step in range(steps):
        now_ms += rng.choice((0, 0, 1, 5, 20))
        roll = rng.random()
        if roll < 0.45:
            out.append(scheduler.offer(_random_job(rng, step, now_ms), now_ms))
        elif roll < 0.7:
            for item in scheduler.release(now_ms, fleet, rng.choice((None, 1, 2))):
                running.append((item.job, item.agent_id))
                out.append((item.job.task_id, item.agent_id, item.effective_priority))
        elif roll < 0.85 and running:
            job, agent_id = running.pop(rng.randrange(len(running)))
            fleet.finish(agent_id)
            scheduler.task_finished(job)
        else:
            out += [(item.job.task_id, item.reason) for item in scheduler.expire(now_ms)]
        out.append((scheduler.held, scheduler.paused, scheduler.next_wakeup_ms(now_ms)))
    return repr(out)


def _random_job(rng: random.Random, step: int, now_ms: int) -> Job:
    return Job(
        task_id=f"t{rng.randrange(step + 1)}",
        priority=rng.randrange(4),
        submitted_ms=now_ms - rng.randrange(100),
        tenant=rng.choice("abc"),
        required_skills=rng.choice(SKILL_SETS),
        target_agent=rng.choice((None, None, None, "n1", "gone")),
        deadline_ms=rng.choice((None, now_ms + rng.randrange(400))),
    )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_the_same_calls_give_the_same_answers(seed: int) -> None:
    assert transcript(seed, steps=300) == transcript(seed, steps=300)


def test_answers_do_not_depend_on_the_hash_seed() -> None:
    """Sets of skills hash differently per process; no decision may follow their order."""
    digests = set()
    for hash_seed in ("1", "2"):
        code = (
            "import hashlib\n"
            "from tests.core.test_scheduler_determinism import transcript\n"
            "print(hashlib.sha256(transcript(11).encode()).hexdigest())"
        )
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        digests.add(done.stdout.strip())
    assert digests == {hashlib.sha256(transcript(11).encode()).hexdigest()}


def test_the_benchmark_keeps_the_held_count_and_reports_every_figure() -> None:
    figures = bench_scheduler(held=2_000, releases=300, seed=3)
    assert figures["held"] == 2_000
    for name in ("release", "offer"):
        for stat in ("median_us", "p99_us", "mean_us"):
            value = figures[f"{name}_{stat}"]
            assert math.isfinite(value) and value > 0
