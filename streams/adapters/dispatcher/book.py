"""The loop's bookkeeping next to the core: what backs each task durably, and what ended.

The core knows jobs; the loop must also know the wire task (payload and all), its shard, and
the input events to acknowledge once the task is safe elsewhere (dispatched, retried, dead-
lettered). Which deliveries are duplicates is the core's rule (``Distributor.is_duplicate``);
the loop acknowledges those at once instead of waiting for a decision that never comes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.adapters.dispatcher.acks import Token
from streams.wire import Task


@dataclass(slots=True)
class Tracked:
    """A task the core holds or has in flight."""

    task: Task
    """As last read or dispatched; the core's job may carry a later attempt."""
    shard: int
    """The partition of its input topic: where its results, retries and table entries go."""
    tokens: list[Token] = field(default_factory=list)
    """Input events acknowledged once the task is dispatched or ended."""
    source: Token | None = None
    """Where it was first read (dead letters name it)."""


class EndedWindow:
    """The most recent ended tasks by dedupe key (bounded); evicting one calls
    ``on_evict(key, shard)`` so the ``ended`` table forgets it too."""

    def __init__(self, size: int, on_evict: Callable[[str, int], object]) -> None:
        self._size = size
        self._on_evict = on_evict
        self._ids: OrderedDict[str, int] = OrderedDict()

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, task_id: str, shard: int) -> None:
        self._ids[task_id] = shard
        self._ids.move_to_end(task_id)
        while len(self._ids) > self._size:
            evicted, evicted_shard = self._ids.popitem(last=False)
            self._on_evict(evicted, evicted_shard)


@dataclass(slots=True)
class Book:
    """Everything the loop tracks besides the core."""

    ended: EndedWindow
    tasks: dict[str, Tracked] = field(default_factory=dict)
    in_table: dict[str, int] = field(default_factory=dict)
    """task id -> the attempt whose assignment the ``inflight`` table holds."""
