"""The sustained rate: the highest paced rate our pipeline keeps up with, at a low latency.

A burst maximum says how fast a backlog is worked off, not what rate can be carried for
good. A *probe* submits tasks open loop at one rate for ``plan.sustain_seconds``; it passes
when, as its last task has been sent,

- the backlog (tasks submitted minus results seen) is at most ``BACKLOG_S`` of arrivals: one
  that grew through the whole probe is far above that;
- and the p99 from due to result seen is at most ``plan.sustain_p99_ms``.

The probes bisect between 0 and the burst maximum, the first at half of it; the sustained rate
is the highest rate that passed (None when none did). Every probe is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from taskd_lab.bench.measure import Latency, latency, paced, run_ids
from taskd_lab.bench.ours import PipelineRun
from taskd_lab.bench.plan import BenchPlan, Progress

BACKLOG_S = 1.0
"""The largest backlog a passing probe may end with, in seconds of arrivals."""
LEAST_TASKS = 100


@dataclass(frozen=True, slots=True)
class Probe:
    """One paced probe: its latency to the result seen, its backlog at the end, the verdict."""

    rate_tps: float
    count: int
    p50_ms: float
    p99_ms: float
    backlog: int
    """Tasks submitted minus results seen when the last task had been sent."""
    bound: int
    """The largest backlog that passes: ``BACKLOG_S`` of arrivals."""
    passed: bool


def judge(rate: float, seen: Latency, backlog: int, p99_limit_ms: float) -> Probe:
    """The verdict on a probe at ``rate`` from its latency and its backlog at the end."""
    bound = max(1, round(rate * BACKLOG_S))
    return Probe(
        rate_tps=rate,
        count=seen.count,
        p50_ms=seen.p50_ms,
        p99_ms=seen.p99_ms,
        backlog=backlog,
        bound=bound,
        passed=backlog <= bound and seen.p99_ms <= p99_limit_ms,
    )


def bisect(probe: Callable[[float], Probe], maximum: float, probes: int) -> list[Probe]:
    """``probes`` probes bisecting ``(0, maximum)``: up from a pass, down from a failure."""
    low, high = 0.0, maximum
    done = []
    for _ in range(probes):
        result = probe(round((low + high) / 2, 1))
        done.append(result)
        if result.passed:
            low = result.rate_tps
        else:
            high = result.rate_tps
    return done


def find_sustained(
    run: PipelineRun, plan: BenchPlan, progress: Progress, maximum: float
) -> dict[str, Any]:
    """The probes through ``run`` and the sustained rate they found."""
    probes = bisect(lambda rate: _probe(run, plan, progress, rate), maximum, plan.sustain_probes)
    passed = [probe.rate_tps for probe in probes if probe.passed]
    return {
        "rate_tps": max(passed, default=None),
        "seconds": plan.sustain_seconds,
        "p99_limit_ms": plan.sustain_p99_ms,
        "backlog_s": BACKLOG_S,
        "probes": [asdict(probe) for probe in probes],
    }


def _probe(run: PipelineRun, plan: BenchPlan, progress: Progress, rate: float) -> Probe:
    count = max(LEAST_TASKS, round(rate * plan.sustain_seconds))
    progress(f"pipeline: sustained? {count:,} tasks paced at {rate:,.0f}/s")
    ids = run_ids(count, f"s{rate:g}")
    due = paced(run.send, run.flush, ids, rate)
    backlog = count - run.seen_count(ids)
    seen = latency(due, run.done(ids).seen, rate)
    return judge(rate, seen, backlog, plan.sustain_p99_ms)
