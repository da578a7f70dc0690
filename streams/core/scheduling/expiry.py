"""Held tasks by last start time, so those past it are found without scanning.

Theory of operation
-------------------
A task is expired at ``now_ms`` when ``now_ms > job.last_start_ms()`` (the earlier of its
deadline and its TTL); a task without either never expires. :class:`ExpiryIndex` keeps a heap
of (last start, seq, task) for the tasks that have one.

Invariants:
- ``pop_expired(now_ms)`` returns every live task expired at ``now_ms``, each once, in order of
  last start time; the scheduler calls it before anything else in each timed call, so no
  expired task heads a queue while a release runs.
- Entries of tasks that left otherwise are stale (``task.alive`` is False) and skipped; the
  heap is rebuilt when it grows past twice the tasks held, so its memory stays bounded.
"""

from __future__ import annotations

import heapq
from typing import Final

from streams.core.scheduling.queues import HeldTask

_COMPACT_SLACK: Final = 64


class ExpiryIndex:
    """A heap of held tasks by last start time, with lazy deletion."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, HeldTask]] = []

    def add(self, task: HeldTask, last_start_ms: int, held: int) -> None:
        """Track ``task``; ``held`` (tasks held now) bounds the stale entries kept."""
        heapq.heappush(self._heap, (last_start_ms, task.seq, task))
        if len(self._heap) > 2 * held + _COMPACT_SLACK:
            self._heap = [entry for entry in self._heap if entry[2].alive]
            heapq.heapify(self._heap)

    def pop_expired(self, now_ms: int) -> list[HeldTask]:
        """The live tasks past their last start time at ``now_ms``, now untracked."""
        heap = self._heap
        expired: list[HeldTask] = []
        while heap and heap[0][0] < now_ms:
            task = heapq.heappop(heap)[2]
            if task.alive:
                expired.append(task)
        return expired

    def next_ms(self) -> int | None:
        """The first time at which a live task will be expired; None if none can."""
        heap = self._heap
        while heap and not heap[0][2].alive:
            heapq.heappop(heap)
        return heap[0][0] + 1 if heap else None
