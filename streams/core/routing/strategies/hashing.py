"""Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, 2018), by capacity.

Theory of operation. A key hashes to a point on the tier's ring; the walk goes clockwise and
takes the first agent with a free slot whose load after this task stays within its bound::

    in_flight + 1 <= ceil(c * (total_in_flight + 1) * capacity / total_capacity)

over the tier's healthy agents, ``c`` being ``hash_load_factor``. Each agent's share of the
``c * (total + 1)`` allowed tasks is proportional to its capacity, as HAProxy's
``hash-balance-factor`` shares them by server weight. With equal capacities this is exactly the
paper's ``ceil(c * average load)`` with ``average = (total + 1) / agents``.

Why by capacity: with unequal capacities a bound on task counts conflicts with late binding
(the free slots sit on large agents whose counts are above average). Weighted, the agent with
the lowest ``in_flight / capacity`` always qualifies whenever any slot is free: its relative
load is at most ``total / total_capacity``, so it is below 1 (free) and below
``c * (total + 1) / total_capacity`` (within its bound). The walk visits every agent, so it
always ends on an agent, and never on one above its bound.

A key therefore stays on its ring position until that agent is ``c`` times above the average
relative load, and only the excess spills to the next agents clockwise. Bounds are computed
exactly in integers (``c`` as a fraction), never in floats.
"""

from __future__ import annotations

from collections.abc import Hashable
from fractions import Fraction

from streams.core.model import AgentInfo, Job
from streams.core.routing.filters import Tier
from streams.core.routing.hashring import HashRing, stable_hash
from streams.core.routing.strategies.base import Pick, Strategy
from streams.core.window import LruMap

MAX_RINGS = 32
"""Hash rings kept (LRU), one per tier that hashes. A ring of 1,000 agents with 100 virtual
nodes takes about 5 MB and 0.1 s to build; deriving it from its previous version takes 20 ms."""


def tier_in_flight(tier: Tier) -> int:
    """Tasks in flight on the tier's healthy agents, read live."""
    return sum([agent.in_flight for agent in tier.agents])


class BoundedLoads:
    """The rings of the tiers and the bounded-load walk over them (shared by two strategies)."""

    __slots__ = ("_denominator", "_numerator", "_rings", "_virtual_nodes")

    def __init__(self, *, load_factor: float, virtual_nodes: int) -> None:
        ratio = Fraction(load_factor)
        self._numerator = ratio.numerator
        self._denominator = ratio.denominator
        self._virtual_nodes = virtual_nodes
        self._rings: LruMap[Hashable, HashRing] = LruMap(MAX_RINGS)

    def ring(self, tier: Tier) -> HashRing:
        """The tier's ring, derived from its previous version's ring when there is one."""
        if tier.ring is None:
            previous = self._rings.get(tier.key)
            if previous is None:
                tier.ring = HashRing(tier.ring_ids, self._virtual_nodes)
            else:
                tier.ring = previous.with_members(tier.ring_ids)
            self._rings.put(tier.key, tier.ring)
        return tier.ring

    def bound(self, agent: AgentInfo, total_in_flight: int, capacity_total: int) -> int:
        """``ceil(c * (total_in_flight + 1) * capacity / capacity_total)``, exactly."""
        numerator = self._numerator * (total_in_flight + 1) * agent.capacity
        return -(-numerator // (self._denominator * max(capacity_total, 1)))

    def within_bound(self, tier: Tier, agent: AgentInfo) -> bool:
        """True when ``agent`` has a free slot and one more task keeps it within its bound."""
        if agent.in_flight >= agent.capacity:
            return False
        if agent.in_flight == 0:  # a free agent's bound is at least 1
            return True
        return agent.in_flight < self.bound(agent, tier_in_flight(tier), tier.capacity_total)

    def pick(self, tier: Tier, key: str) -> AgentInfo | None:
        """The first free agent clockwise from ``key`` within its bound (see the module doc)."""
        members = tier.members
        total = -1  # summed on first need: an idle agent is always within its bound
        overflow: AgentInfo | None = None
        for agent_id in self.ring(tier).walk(stable_hash(key)):
            agent = members.get(agent_id)
            if agent is None or agent.in_flight >= agent.capacity:
                continue
            if agent.in_flight == 0:
                return agent
            if total < 0:
                total = tier_in_flight(tier)
            if agent.in_flight < self.bound(agent, total, tier.capacity_total):
                return agent
            overflow = overflow or agent
        # Unreachable while capacities match the membership version (see the module doc); kept
        # so that a capacity changed without a version bump can never leave a free slot unused.
        return overflow


class ConsistentHash(Strategy):
    """Bounded-load consistent hashing on ``affinity_key``, or the task id when it has none."""

    __slots__ = ("_loads",)

    def __init__(self, loads: BoundedLoads) -> None:
        self._loads = loads

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        key = job.affinity_key if job.affinity_key is not None else job.task_id
        agent = self._loads.pick(tier, key)
        return None if agent is None else Pick(agent)
