"""The held tasks of each task type: how many, the longest held, the nearest last start.

The scheduler tells it of every task it starts and stops holding (``held`` and ``left``); the
grouping asks it whether a type's group is full or due. Only the types it ``watch``es are kept
(those some agent has a batch handler for): the held tasks of a type are taken in when it is
watched, so the others cost one set lookup per task. Entries of tasks that left are skipped
lazily (``HeldTask.alive``) and compacted once they outnumber the live ones.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.core.scheduling.queues import HeldTask

_COMPACT_SLACK = 64


@dataclass(slots=True)
class _OfType:
    count: int = 0
    by_offer: deque[HeldTask] = field(default_factory=deque)
    """In order of offer (the scheduler's clock never runs back): the front is the longest
    held."""
    by_last_start: list[tuple[int, int, HeldTask]] = field(default_factory=list)
    """Heap of (last start, seq, task) of the tasks that have one."""


class WaitingByType:
    """Held tasks per task type (see the module docstring)."""

    def __init__(self) -> None:
        self._types: dict[str, _OfType] = {}
        self._watched: set[str] = set()

    def watch(self, task_type: str, held: Iterable[HeldTask]) -> None:
        """Keep ``task_type`` from now on; ``held``: its tasks the scheduler holds now."""
        if task_type in self._watched:
            return
        self._watched.add(task_type)
        for task in sorted(held, key=lambda task: task.seq):  # the order of offer
            self._add(task)

    def unwatch(self, task_type: str) -> None:
        """Keep ``task_type`` no more."""
        self._watched.discard(task_type)
        self._types.pop(task_type, None)

    def held(self, task: HeldTask) -> None:
        """The scheduler holds ``task`` from now on."""
        if task.job.task_type in self._watched:
            self._add(task)

    def _add(self, task: HeldTask) -> None:
        of_type = self._types.get(task.job.task_type)
        if of_type is None:
            of_type = self._types[task.job.task_type] = _OfType()
        of_type.count += 1
        of_type.by_offer.append(task)
        last_start_ms = task.job.last_start_ms()
        if last_start_ms is not None:
            heapq.heappush(of_type.by_last_start, (last_start_ms, task.seq, task))

    def left(self, task: HeldTask) -> None:
        """``task`` left the scheduler (released, removed, expired); ``alive`` is False."""
        task_type = task.job.task_type
        of_type = self._types.get(task_type)
        if of_type is None:  # not watched
            return
        of_type.count -= 1
        if of_type.count == 0:
            del self._types[task_type]
        elif len(of_type.by_offer) > 2 * of_type.count + _COMPACT_SLACK:
            _compact(of_type)

    def count(self, task_type: str) -> int:
        """How many tasks of ``task_type`` are held."""
        of_type = self._types.get(task_type)
        return 0 if of_type is None else of_type.count

    def first_offered_ms(self, task_type: str) -> int | None:
        """When the longest-held task of ``task_type`` was offered."""
        of_type = self._types.get(task_type)
        if of_type is None:
            return None
        while not of_type.by_offer[0].alive:
            of_type.by_offer.popleft()
        return of_type.by_offer[0].offered_ms

    def nearest_last_start_ms(self, task_type: str) -> int | None:
        """The earliest last start time (deadline or TTL) of a held task of ``task_type``."""
        of_type = self._types.get(task_type)
        if of_type is None:
            return None
        heap = of_type.by_last_start
        while heap and not heap[0][2].alive:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


def _compact(of_type: _OfType) -> None:
    of_type.by_offer = deque(task for task in of_type.by_offer if task.alive)
    of_type.by_last_start = [entry for entry in of_type.by_last_start if entry[2].alive]
    heapq.heapify(of_type.by_last_start)
