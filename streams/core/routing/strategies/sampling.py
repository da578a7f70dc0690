"""Strategies that sample: uniform random, and the power of two choices.

Sampling keeps a decision ``O(1)`` in a large fleet: draw agents uniformly from the tier and
keep the first with a free slot. Rejection sampling is uniform over the free agents; after a
few misses (a nearly full tier) it falls back to listing the free agents, which is still
uniform, and which finds one whenever one exists. Randomness comes from a ``random.Random``
seeded from the configuration, so decisions are reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from streams.core.model import AgentInfo, Job
from streams.core.routing.filters import Tier
from streams.core.routing.strategies.base import Pick, Strategy

SAMPLE_TRIES = 8
"""Random draws before falling back to a scan of the tier."""


def sample_free(
    rng: random.Random, agents: Sequence[AgentInfo], exclude: AgentInfo | None = None
) -> AgentInfo | None:
    """A uniformly random agent with a free slot, other than ``exclude``; ``None`` if none."""
    count = len(agents)
    for _ in range(SAMPLE_TRIES):
        agent = agents[rng.randrange(count)]
        if agent.in_flight < agent.capacity and agent is not exclude:
            return agent
    free = [a for a in agents if a.in_flight < a.capacity and a is not exclude]
    return rng.choice(free) if free else None


def less_loaded(first: AgentInfo, second: AgentInfo) -> AgentInfo:
    """The agent with the lower ``in_flight / capacity`` (exact; ties: the smaller id)."""
    first_key = (first.in_flight * second.capacity, first.agent_id)
    second_key = (second.in_flight * first.capacity, second.agent_id)
    return first if first_key <= second_key else second


class RandomChoice(Strategy):
    """A uniformly random agent; ``free_only`` False is the push baseline (capacity ignored)."""

    __slots__ = ("_free_only", "_rng")

    def __init__(self, *, seed: int, free_only: bool) -> None:
        self._rng = random.Random(seed)
        self._free_only = free_only

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        if not self._free_only:
            return Pick(self._rng.choice(tier.agents))
        agent = sample_free(self._rng, tier.agents)
        return None if agent is None else Pick(agent)


class PowerOfTwoChoices(Strategy):
    """Two distinct random agents with a free slot; the less loaded one wins.

    Nearly as even as least-connections, at the cost of two draws instead of a scan.
    """

    __slots__ = ("_rng",)

    def __init__(self, *, seed: int) -> None:
        self._rng = random.Random(seed)

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        first = sample_free(self._rng, tier.agents)
        if first is None:
            return None
        second = sample_free(self._rng, tier.agents, exclude=first)
        return Pick(first if second is None else less_loaded(first, second))
