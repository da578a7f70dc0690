"""A bounded mapping that forgets its least recently used entries: the router's memory stays flat.

The router keeps several caches keyed by things users control (affinity keys, constraint
classes); each is an :class:`LruCache` so that no stream of distinct keys can grow memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from streams.errors import CoreError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``max_entries`` entries; reading or writing an entry makes it the most recent."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise CoreError(f"an LRU cache needs room for at least one entry, got {max_entries}")
        self._max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now the most recent), or ``None``."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value``, evicting the least recently used entry when full."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard_where(self, predicate: Callable[[K, V], bool]) -> None:
        """Drop every entry where ``predicate(key, value)`` holds (a full scan: for rare use)."""
        for key in [k for k, v in self._entries.items() if predicate(k, v)]:
            del self._entries[key]
