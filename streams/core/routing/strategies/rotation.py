"""Strategies that take turns: round robin and smooth weighted round robin (nginx).

Both skip agents without a free slot when they bind late; a skipped agent does not accumulate
weight, exactly as nginx skips a peer that is down, so a busy agent is not owed a burst later.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from streams.core.model import AgentInfo, Job
from streams.core.routing.filters import Tier
from streams.core.routing.strategies.base import MAX_TIER_STATES, Pick, Strategy
from streams.core.window import LruMap


class RoundRobin(Strategy):
    """Each pick starts after the previous one, in the tier's (registry) order.

    ``free_only`` False is the push baseline: every healthy capable agent takes its turn,
    even past its capacity.
    """

    __slots__ = ("_cursors", "_free_only")

    def __init__(self, *, free_only: bool) -> None:
        self._free_only = free_only
        self._cursors: LruMap[Hashable, int] = LruMap(MAX_TIER_STATES)

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        agents = tier.agents
        count = len(agents)
        start = (self._cursors.get(tier.key) or 0) % count
        for step in range(count):
            index = (start + step) % count
            agent = agents[index]
            if not self._free_only or agent.in_flight < agent.capacity:
                self._cursors.put(tier.key, index + 1)
                return Pick(agent)
        return None


class SmoothWeighted(Strategy):
    """Smooth weighted round robin, as nginx does it, by ``AgentInfo.weight``.

    Each pick adds every eligible agent's weight to its current weight, picks the largest
    (the first in registry order on ties) and takes the sum of the weights from it. Over a cycle
    of ``sum(weights)`` picks (integer weights, nothing busy) each agent is picked exactly its
    weight times, interleaved rather than in bursts. Negative weights count as zero.
    """

    __slots__ = ("_cycles",)

    def __init__(self) -> None:
        self._cycles: LruMap[Hashable, _Cycle] = LruMap(MAX_TIER_STATES)

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        cycle = self._cycle(tier)
        agents, weights, current = cycle.agents, cycle.weights, cycle.current
        best = -1
        best_weight = 0.0
        total = 0.0
        for index, agent in enumerate(agents):
            if agent.in_flight >= agent.capacity:
                continue
            weight = weights[index]
            total += weight
            agent_weight = current[index] + weight
            current[index] = agent_weight
            if best < 0 or agent_weight > best_weight:
                best, best_weight = index, agent_weight
        if best < 0:
            return None
        current[best] = best_weight - total
        return Pick(agents[best])

    def _cycle(self, tier: Tier) -> _Cycle:
        """The tier's weights, realigned when a new version brings a new agent list."""
        cycle = self._cycles.get(tier.key)
        if cycle is None or cycle.agents is not tier.agents:
            cycle = _Cycle.aligned(tier.agents, cycle)
            self._cycles.put(tier.key, cycle)
        return cycle


@dataclass(slots=True)
class _Cycle:
    """Weights and current weights, index-aligned with one version's agents for a fast loop."""

    agents: tuple[AgentInfo, ...]
    weights: list[float]
    current: list[float]

    @classmethod
    def aligned(cls, agents: tuple[AgentInfo, ...], previous: _Cycle | None) -> _Cycle:
        """A cycle over ``agents`` that keeps the current weights of agents still present."""
        carried: dict[str, float] = {}
        if previous is not None:
            ids = (agent.agent_id for agent in previous.agents)
            carried = dict(zip(ids, previous.current, strict=True))
        weights = [agent.weight if agent.weight > 0 else 0.0 for agent in agents]
        current = [carried.get(agent.agent_id, 0.0) for agent in agents]
        return cls(agents, weights, current)
