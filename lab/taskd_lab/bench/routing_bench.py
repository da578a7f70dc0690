"""How long one routing decision takes in a large fleet, for each strategy.

The simulation keeps the fleet busy: every routed task takes a slot, and random tasks complete
so that about ``UTILIZATION`` of the fleet's slots stay in use, as under steady load. Only the
``Router.route`` call is timed. Run ``python -m taskd_lab.bench.routing_bench`` for every strategy.
"""

from __future__ import annotations

import random
import statistics
import time

from streams.core.model import AgentInfo, Job
from streams.core.routing import STRATEGY_NAMES, RouteOutcome, Router, RoutingConfig

UTILIZATION = 0.75
"""Share of all slots kept in flight."""
KEYED_SHARE = 0.8
"""Share of jobs with an affinity key; the rest go by task id (or least-connections)."""
AFFINITY_KEYS = 5_000
WARMUP_DECISIONS = 1_000
"""Untimed decisions first, so one-off work (building the hash ring) is reported apart."""


def bench_routing(
    strategy: str, agents: int = 1000, decisions: int = 20000, seed: int = 0
) -> dict[str, float]:
    """Time ``decisions`` routing decisions among ``agents`` agents with ``strategy``.

    Returns ``median_us``, ``p99_us`` and ``mean_us`` per decision, ``first_decision_ms`` (the
    first call, which builds the per-version caches and hash rings) and ``busy_share``.
    """
    rng = random.Random(seed)
    fleet = _Fleet(rng, agents)
    router = Router(RoutingConfig(strategy=strategy, seed=seed))
    first_ns = fleet.decide(router, _job(rng, 0))[0]
    timings_ns: list[int] = []
    busy = 0
    for index in range(1, WARMUP_DECISIONS + decisions):
        elapsed_ns, outcome = fleet.decide(router, _job(rng, index))
        if index >= WARMUP_DECISIONS:
            timings_ns.append(elapsed_ns)
            busy += outcome is RouteOutcome.BUSY
    return _summary(timings_ns, first_ns, busy)


class _Fleet:
    """The simulated registry: agents whose ``in_flight`` moves with dispatches and completions."""

    def __init__(self, rng: random.Random, agents: int) -> None:
        self.rng = rng
        self.agents = [_agent(rng, index) for index in range(agents)]
        self.by_id = {agent.agent_id: agent for agent in self.agents}
        self.running: list[AgentInfo] = []
        self.max_running = int(UTILIZATION * sum(agent.capacity for agent in self.agents))

    def decide(self, router: Router, job: Job) -> tuple[int, RouteOutcome]:
        """Route one job, timed; dispatch it, then complete tasks down to the utilization."""
        start_ns = time.perf_counter_ns()
        route = router.route(job, self.agents, 1, job.submitted_ms)
        elapsed_ns = time.perf_counter_ns() - start_ns
        if route.agent_id is not None:
            agent = self.by_id[route.agent_id]
            agent.in_flight += 1
            self.running.append(agent)
        elif self.running:
            self.complete()
        while len(self.running) > self.max_running:
            self.complete()
        return elapsed_ns, route.outcome

    def complete(self) -> None:
        """A random running task finishes: its agent gets the slot back."""
        running = self.running
        index = self.rng.randrange(len(running))
        running[index], running[-1] = running[-1], running[index]
        running.pop().in_flight -= 1


def _agent(rng: random.Random, index: int) -> AgentInfo:
    capacity = rng.choice((2, 4, 8, 16))
    return AgentInfo(
        f"agent-{index:05d}",
        capacity,
        weight=capacity / 4,
        zone=f"zone-{index % 3}",
        ewma_run_ms=rng.uniform(50.0, 500.0) if rng.random() < 0.9 else None,
        ewma_success=rng.uniform(0.9, 1.0),
    )


def _job(rng: random.Random, index: int) -> Job:
    key = f"key-{rng.randrange(AFFINITY_KEYS)}" if rng.random() < KEYED_SHARE else None
    return Job(f"task-{index}", priority=rng.randrange(4), submitted_ms=index, affinity_key=key)


def _summary(timings_ns: list[int], first_ns: int, busy: int) -> dict[str, float]:
    timings_us = sorted(ns / 1_000 for ns in timings_ns)
    return {
        "median_us": statistics.median(timings_us),
        "p99_us": timings_us[min(len(timings_us) - 1, int(0.99 * len(timings_us)))],
        "mean_us": statistics.fmean(timings_us),
        "first_decision_ms": first_ns / 1_000_000,
        "busy_share": busy / len(timings_us),
    }


def main() -> None:
    """Print the figures of every strategy with the default sizes."""
    print(f"{'strategy':22} {'median µs':>10} {'p99 µs':>10} {'mean µs':>10} {'first ms':>10}")
    for strategy in STRATEGY_NAMES:
        result = bench_routing(strategy)
        print(
            f"{strategy:22} {result['median_us']:10.1f} {result['p99_us']:10.1f} "
            f"{result['mean_us']:10.1f} {result['first_decision_ms']:10.1f}"
        )


if __name__ == "__main__":
    main()
