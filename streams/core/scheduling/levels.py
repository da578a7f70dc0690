"""Which queues stand at which effective priority now, and when each must be looked at again.

Theory of operation
-------------------
A queue's effective priority is that of its head (``priority.effective_priority``): every task
of a queue competes at the same priority, and the head is the one released. It changes only
when the head changes (the scheduler then calls :meth:`LevelIndex.move`) or when time reaches
the head's ``next_change_ms`` (a timer, :meth:`LevelIndex.schedule`, :meth:`LevelIndex.due`).

Tiers: ``tier(eff)`` maps tenant -> {queue key -> queue} for the queues at effective priority
``eff`` (-1 for escalated, then ``0 .. levels-1``). A release looks at one tier and, inside it,
at one tenant's queues: its work grows with tenants and classes, never with tasks.

Invariants:
- A queue is in at most one tier, the one named by ``queue.eff``; empty dicts are removed, so
  ``tier(eff)`` is falsy exactly when no queue stands there.
- ``queue.timer_ms`` is the earliest timer pending for the queue; later timers of the same
  queue are stale and ignored when they come due. Stale timers are purged once they
  outnumber the indexed queues, so memory stays proportional to the queues.
"""

from __future__ import annotations

import heapq
from typing import Final

from streams.core.scheduling.priority import ESCALATED
from streams.core.scheduling.queues import QueueKey, TaskQueue

Tier = dict[str, dict[QueueKey, TaskQueue]]

_PURGE_SLACK: Final = 64


class LevelIndex:
    """The queues by effective priority, with the timers that re-evaluate them."""

    def __init__(self, levels: int) -> None:
        self._tiers: list[Tier] = [{} for _ in range(levels - ESCALATED)]
        self._timers: list[tuple[int, int, TaskQueue]] = []
        self._timer_seq = 0
        self._indexed = 0

    def tier(self, eff: int) -> Tier:
        """Tenant -> queues at effective priority ``eff`` (do not mutate)."""
        return self._tiers[eff - ESCALATED]

    def move(self, queue: TaskQueue, eff: int | None) -> None:
        """Index ``queue`` at ``eff`` (None: take it out)."""
        if queue.eff == eff:
            return
        if queue.eff is not None:
            tenants = self._tiers[queue.eff - ESCALATED]
            queues = tenants[queue.tenant]
            del queues[queue.key]
            if not queues:
                del tenants[queue.tenant]
            self._indexed -= 1
        if eff is not None:
            tenants = self._tiers[eff - ESCALATED]
            tenants.setdefault(queue.tenant, {})[queue.key] = queue
            self._indexed += 1
        queue.eff = eff

    def schedule(self, queue: TaskQueue, at_ms: int) -> None:
        """Make sure ``queue`` comes due at ``at_ms`` or earlier."""
        if queue.timer_ms is not None and queue.timer_ms <= at_ms:
            return
        queue.timer_ms = at_ms
        self._timer_seq += 1
        heapq.heappush(self._timers, (at_ms, self._timer_seq, queue))
        if len(self._timers) > 2 * self._indexed + _PURGE_SLACK:
            self._timers = [timer for timer in self._timers if _is_current(timer)]
            heapq.heapify(self._timers)

    def due(self, now_ms: int) -> list[TaskQueue]:
        """The queues whose timer came due by ``now_ms``; their timers are cleared."""
        timers = self._timers
        queues: list[TaskQueue] = []
        while timers and timers[0][0] <= now_ms:
            timer = heapq.heappop(timers)
            if _is_current(timer):
                timer[2].timer_ms = None
                queues.append(timer[2])
        return queues

    def next_ms(self) -> int | None:
        """When the earliest current timer comes due; None if none is pending."""
        timers = self._timers
        while timers and not _is_current(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None


def _is_current(timer: tuple[int, int, TaskQueue]) -> bool:
    queue = timer[2]
    return queue.alive and queue.timer_ms == timer[0]
