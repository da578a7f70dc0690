"""In-order commit bookkeeping for one partition: what may be committed.

Records are finished out of order (a held task waits while later ones are dispatched; an agent's
results come back in any order), but an offset may be committed only when every record below it
is finished: the committable offset is the lowest one still pending, or one past the highest
finished when none is. The dispatcher keeps one per input partition, an agent one for its
dispatch partition.
"""

from __future__ import annotations

import heapq


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
        """``offset`` was read and is now being handled."""
        heapq.heappush(self._pending, offset)
        self._next = max(self._next, offset + 1)

    def finish(self, offset: int) -> None:
        """``offset`` needs nothing more before a commit may pass it."""
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            self._finished.discard(heapq.heappop(self._pending))

    def committable(self) -> int:
        """The offset to commit: every record below it is finished."""
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
        """How many taken offsets are not finished yet."""
        return len(self._pending) - len(self._finished)
