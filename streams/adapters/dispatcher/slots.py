"""This instance's share of every agent's slots, following the shards it owns.

The core counts, for each agent, only the slots this instance may fill: the share of the shards
it owns (``streams/core/shares.py``). An agent announces its capacity in its heartbeats; the
share changes with them, and whenever a rebalance gives this instance shards or takes some away,
when every known agent's share is re-counted at once (a ``SlotsResized`` event each), so that an
instance losing shards stops filling their slots before the next heartbeat.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.core.events import SlotsResized
from streams.core.shares import share


class AgentSlots:
    """Each agent's announced slots, and this instance's share of them."""

    def __init__(self, shards: int) -> None:
        self._shards = shards
        self._owned: frozenset[int] = frozenset()
        self._announced: dict[str, tuple[int, int]] = {}
        """Agent id -> (its dispatch partition, the slots the dispatcher counts for it:
        capacity plus prefetch)."""
        self._capacity: dict[str, int] = {}
        """Agent id -> the capacity its last heartbeat announced."""

    @property
    def owned(self) -> frozenset[int]:
        return self._owned

    def announced(self, agent_id: str, partition: int, capacity: int, slots: int) -> int:
        """Note what the heartbeat of the agent on ``dispatch`` partition ``partition`` offers
        (its ``capacity``, counted as ``slots``); this instance's share of the slots."""
        self._announced[agent_id] = (partition, slots)
        self._capacity[agent_id] = capacity
        return share(partition, slots, self._owned, self._shards)

    def capacity(self, agent_id: str) -> int | None:
        """The capacity the agent announced (``None``: unknown), whatever this instance's
        share of it: what an operator set, for the logs."""
        return self._capacity.get(agent_id)

    def forget(self, agent_id: str) -> None:
        self._announced.pop(agent_id, None)
        self._capacity.pop(agent_id, None)

    def own(self, shards: Iterable[int]) -> list[SlotsResized]:
        """This instance now owns ``shards`` (and no others): every agent's new share."""
        owned = frozenset(shards)
        if owned == self._owned:
            return []
        self._owned = owned
        return [
            SlotsResized(agent_id, share(partition, slots, owned, self._shards))
            for agent_id, (partition, slots) in self._announced.items()
        ]
