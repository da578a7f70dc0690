"""The affinity strategy, the product default: a key keeps going to the agent it went to.

A job with an ``affinity_key`` returns to the agent remembered for that key while the agent is
in the job's tier (healthy, capable, in the pool and zone), has a free slot and stays within the
bounded-load bound; otherwise bounded-load consistent hashing picks, and the pick is remembered
in its place. Keys are remembered in an LRU of ``affinity_keys_max`` entries. Jobs without a key
go to the least loaded agent.

Warm state (caches, open sessions, models in memory) on an agent is why keys stick; the bound
is why a hot key cannot pile work onto one agent.
"""

from __future__ import annotations

from streams.core.model import Job
from streams.core.routing.filters import Tier
from streams.core.routing.strategies.base import Pick, Strategy
from streams.core.routing.strategies.hashing import BoundedLoads
from streams.core.routing.strategies.scoring import least_loaded
from streams.core.window import LruMap


class Affinity(Strategy):
    """Sticky keys with a bounded-load fallback; ``Pick.affinity_hit`` says which applied."""

    __slots__ = ("_keys", "_loads")

    def __init__(self, loads: BoundedLoads, *, keys_max: int) -> None:
        self._loads = loads
        self._keys: LruMap[str, str] = LruMap(keys_max)

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        key = job.affinity_key
        if key is None:
            agent = least_loaded(tier)
            return None if agent is None else Pick(agent)
        remembered_id = self._keys.get(key)
        remembered = None if remembered_id is None else tier.members.get(remembered_id)
        if remembered is not None and self._loads.within_bound(tier, remembered):
            return Pick(remembered, affinity_hit=True)
        agent = self._loads.pick(tier, key)
        if agent is None:
            return None
        self._keys.put(key, agent.agent_id)
        return Pick(agent, affinity_hit=False)

    def forget(self, agent_id: str) -> None:
        """Forget every key remembered on ``agent_id`` (a scan of the LRU: agents leave rarely)."""
        self._keys.discard_where(lambda _key, remembered_id: remembered_id == agent_id)
