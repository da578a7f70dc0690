"""The packing strategy: fill the fewest agents, so that the others idle and can be scaled in.

Theory of operation. Like every late-binding strategy, packing only chooses *which* free slot a
task takes: the scheduler hands a task out only when some candidate has a free slot, and takes
any free slot as soon as a task waits, so packing never holds work back and never leaves a slot
unused while the queue is not empty. What it changes is where the work lands when several slots
are free: on the agent that is already the busiest, so agents that are not needed stay empty
and can idle, power down or be scaled in. Among the free agents of the tier it picks by, in
order:

1. **pace**: an agent whose recent run time (``ewma_run_ms``) is at most ``SLOWER_LIMIT``
   times the median of the tier's, or not known yet, before a slower one;
2. **load**: the highest ``in_flight / capacity`` (compared exactly, in integers);
3. **cost**: the lowest ``cost_per_task`` (the price the agent announces in its heartbeats,
   ``taskd agent --cost``); it decides which idle agent opens first when loads tie;
4. **id**: the smaller, so the same inputs give the same decision.

Why it stays within the SLO. Late binding is work-conserving: a task waits only while every
slot that may run it is busy, whichever free slots packing picked before, so any backlog is
served by the whole capacity and cannot grow without bound below it. When there is a backlog,
every free slot is taken at once and packing changes nothing; it decides only while there is
room. What it could still spoil is run times: an
agent that is slow keeps its tasks longer and so looks busy, and packing onto whatever is
busiest would feed it first; every task sent there takes more slot-time, the fleet is full
more often and tasks wait more. The pace rule stops that: a markedly slow agent takes work
only when no agent at the tier's pace has a free slot, and it is among the first left idle.
The median, not the fastest, is the reference because one agent's run time is noisy (a
rarely used agent whose one task was short would make every busy agent look slow, and
packing would spread). Unknown run times count as at pace, so a new agent is tried.

Like least-connections, a decision scans the tier: ``O(tier)``.
"""

from __future__ import annotations

import statistics

from streams.core.model import AgentInfo, Job
from streams.core.routing.filters import Tier
from streams.core.routing.strategies.base import Pick, Strategy

SLOWER_LIMIT = 1.5
"""How much slower than the tier's median recent run time an agent may be and still be packed
before the slower ones (1.5: half again as long)."""

RUN_MS_FLOOR = 1.0
"""The tier's median run time is taken as at least this (ms), so that tasks that take no
measurable time do not make the agents that ran one a little longer look slow."""


def at_pace(agent: AgentInfo, typical_ms: float | None) -> bool:
    """True when ``agent``'s recent run time is within ``SLOWER_LIMIT`` of ``typical_ms``
    (or either is not known yet)."""
    run_ms = agent.ewma_run_ms
    return run_ms is None or typical_ms is None or run_ms <= SLOWER_LIMIT * typical_ms


def packs_before(agent: AgentInfo, other: AgentInfo) -> bool:
    """True when, both at the same pace, ``agent`` is the better place to pack the next task:
    busier (relative to capacity), else cheaper, else the smaller id."""
    busier = agent.in_flight * other.capacity - other.in_flight * agent.capacity
    if busier != 0:
        return busier > 0
    if agent.cost_per_task != other.cost_per_task:
        return agent.cost_per_task < other.cost_per_task
    return agent.agent_id < other.agent_id


def busiest_free(tier: Tier) -> AgentInfo | None:
    """The free agent packing picks (see the module doc); ``None`` when none is free."""
    known = [agent.ewma_run_ms for agent in tier.agents if agent.ewma_run_ms is not None]
    typical_ms = max(statistics.median(known), RUN_MS_FLOOR) if known else None
    best: AgentInfo | None = None
    best_at_pace = False
    for agent in tier.agents:
        if agent.in_flight >= agent.capacity:
            continue
        paced = at_pace(agent, typical_ms)
        if (
            best is None
            or (paced and not best_at_pace)
            or (paced == best_at_pace and packs_before(agent, best))
        ):
            best, best_at_pace = agent, paced
    return best


class Packing(Strategy):
    """The busiest free agent at the tier's pace, the cheapest at equal load."""

    __slots__ = ()

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        agent = busiest_free(tier)
        return None if agent is None else Pick(agent)
