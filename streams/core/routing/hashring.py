"""A consistent-hash ring: agents at virtual points on a circle of 64-bit hashes.

Theory of operation. Every agent id is placed at ``virtual_nodes`` points, the stable hashes of
``"<agent id>#<i>"``; a key belongs to the first point clockwise from its own hash. Adding or
removing one of ``n`` agents therefore moves only the keys of the arcs that agent gains or
loses, about ``1/n`` of them, and every moved key moves to (or from) that agent.

Invariants:

- ``_points`` is sorted ascending, ``_owners[i]`` owns ``_points[i]``; equal points (64-bit
  collisions) are ordered by owner id, so a ring's layout depends only on its member set, never
  on the order of changes that produced it;
- hashes come from blake2b, never from ``hash()``, so they are the same in every process and
  release, and every dispatcher instance agrees on where a key lives.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from hashlib import blake2b

_HASH_BYTES = 8
_WALK_STEPS_PER_AGENT = 2
"""Ring steps a walk takes per member before it visits the unseen rest in id order."""


def stable_hash(key: str) -> int:
    """The 64-bit blake2b hash of ``key``: identical in every process, unlike ``hash()``."""
    digest = blake2b(key.encode("utf-8"), digest_size=_HASH_BYTES).digest()
    return int.from_bytes(digest, "big")


def vnode_points(agent_id: str, virtual_nodes: int) -> list[tuple[int, str]]:
    """The ring points of one agent, as ``(point, agent id)`` pairs."""
    return [(stable_hash(f"{agent_id}#{index}"), agent_id) for index in range(virtual_nodes)]


class HashRing:
    """An immutable ring over a set of agent ids; :meth:`with_members` derives a changed ring."""

    __slots__ = ("_ordered_ids", "_owners", "_points", "ids", "virtual_nodes")

    def __init__(self, ids: Iterable[str], virtual_nodes: int) -> None:
        members = frozenset(ids)
        pairs = [pair for agent_id in members for pair in vnode_points(agent_id, virtual_nodes)]
        self._set(members, virtual_nodes, pairs)

    def _set(self, ids: frozenset[str], virtual_nodes: int, pairs: list[tuple[int, str]]) -> None:
        pairs.sort()
        self.ids = ids
        self.virtual_nodes = virtual_nodes
        self._points = [point for point, _ in pairs]
        self._owners = [owner for _, owner in pairs]
        self._ordered_ids = sorted(ids)

    def with_members(self, ids: frozenset[str]) -> HashRing:
        """The ring over ``ids``, hashing only the agents that joined: ``O(points)``, no rehash."""
        if ids == self.ids:
            return self
        removed = self.ids - ids
        pairs = [
            pair for pair in zip(self._points, self._owners, strict=True) if pair[1] not in removed
        ]
        for agent_id in ids - self.ids:
            pairs.extend(vnode_points(agent_id, self.virtual_nodes))
        ring = HashRing.__new__(HashRing)
        ring._set(ids, self.virtual_nodes, pairs)
        return ring

    def owner(self, key_hash: int) -> str | None:
        """The agent owning ``key_hash`` (first point clockwise); ``None`` on an empty ring."""
        if not self._points:
            return None
        index = bisect_left(self._points, key_hash)
        return self._owners[index if index < len(self._owners) else 0]

    def walk(self, key_hash: int) -> Iterator[str]:
        """Every member once, clockwise from ``key_hash``.

        After ``2 * members`` ring steps the walk yields the members it has not met yet in id
        order, so a walk that rejects almost every agent costs ``O(members)``, not
        ``O(members * virtual_nodes)``.
        """
        points, owners = self._points, self._owners
        size = len(owners)
        index = bisect_left(points, key_hash)
        seen: set[str] = set()
        for _ in range(min(size, _WALK_STEPS_PER_AGENT * len(self.ids))):
            if index == size:
                index = 0
            owner = owners[index]
            index += 1
            if owner not in seen:
                seen.add(owner)
                yield owner
        for owner in self._ordered_ids:
            if owner not in seen:
                yield owner

    def __len__(self) -> int:
        """The number of points on the ring."""
        return len(self._points)
