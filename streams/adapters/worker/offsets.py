"""In-order commit bookkeeping for one partition, and the memory of attempts already run.

Results finish out of order, but an offset may be committed only when every assignment below
it has its result written: the committable offset is the lowest one still pending, or one past
the highest finished when none is.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict


class OffsetTracker:
    """Offsets taken from one partition, and which of them are finished."""

    def __init__(self, start_offset: int) -> None:
        self._next = start_offset
        """One past the highest offset taken (where reading resumes)."""
        self._pending: list[int] = []
        """A heap of offsets taken and not finished; finished ones are removed lazily."""
        self._finished: set[int] = set()
        self._committed = start_offset

    def take(self, offset: int) -> None:
        """``offset`` was read and its assignment is now being handled."""
        heapq.heappush(self._pending, offset)
        self._next = max(self._next, offset + 1)

    def finish(self, offset: int) -> None:
        """``offset``'s result is written (or it needs none: stale, repeated, undecodable)."""
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            self._finished.discard(heapq.heappop(self._pending))

    def committable(self) -> int:
        """The offset to commit: every assignment below it is finished."""
        return self._pending[0] if self._pending else self._next

    def to_commit(self) -> int | None:
        """The committable offset if it moved since the last call; marks it committed."""
        offset = self.committable()
        if offset <= self._committed:
            return None
        self._committed = offset
        return offset

    @property
    def unfinished(self) -> int:
        """How many taken offsets still wait for their result."""
        return len(self._pending) - len(self._finished)


class SeenAttempts:
    """The (dedupe key, attempt) pairs already taken, the oldest forgotten beyond ``limit``.

    The dedupe key (``streams.core.model.dedupe_key``) counts dead-letter replays, so a replayed
    task, which keeps its id and restarts at attempt 0, is run again.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def first_time(self, task_id: str, attempt: int) -> bool:
        """Remember the pair; whether it was new."""
        key = (task_id, attempt)
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return True
