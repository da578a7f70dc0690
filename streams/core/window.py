"""One bounded map for every "remember the recent ones" in the system.

The router's caches (affinity keys, rings, cursors, constraint classes), the distributor's
window of ended tasks (duplicate deliveries are dropped by it) and an agent's memory of the
attempts it already ran are each a :class:`LruMap`: no stream of distinct keys can grow memory
past ``max_entries``, and the least recently used entry is the one forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from streams.errors import CoreError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruMap(Generic[K, V]):
    """At most ``max_entries`` entries; reading (``get``) or writing an entry makes it the most
    recent. ``in`` does not."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise CoreError(f"a bounded map needs room for at least one entry, got {max_entries}")
        self._max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        """The keys, least recently used first."""
        return iter(self._entries)

    @property
    def max_entries(self) -> int:
        return self._max_entries

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now the most recent), or ``None``."""
        entries = self._entries
        if key not in entries:
            return None
        entries.move_to_end(key)
        return entries[key]

    def put(self, key: K, value: V) -> tuple[K, V] | None:
        """Store ``value`` as the most recent; the entry evicted to make room, if one was."""
        entries = self._entries
        entries[key] = value
        entries.move_to_end(key)
        if len(entries) > self._max_entries:
            return entries.popitem(last=False)
        return None

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def discard_where(self, predicate: Callable[[K, V], bool]) -> None:
        """Drop every entry where ``predicate(key, value)`` holds (a full scan: for rare use)."""
        for key in [k for k, v in self._entries.items() if predicate(k, v)]:
            del self._entries[key]
