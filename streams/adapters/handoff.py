"""Delivery reports from a librdkafka poll thread to the event loops waiting for them.

A producer's delivery callbacks run on the thread that polls it. Each one that must reach an
event loop is queued here, and the poll thread hands the queue over once per poll: one wake-up
of each loop per batch rather than one per record, which at hundreds of records a second was a
good part of the dispatcher's and the agents' time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

FollowUp = Callable[[], object]


class LoopHandoff:
    """Follow-ups queued from any thread, run on their own event loop in batches."""

    def __init__(self) -> None:
        self._queue: deque[tuple[asyncio.AbstractEventLoop, FollowUp]] = deque()

    def put(self, loop: asyncio.AbstractEventLoop, follow_up: FollowUp) -> None:
        """Queue ``follow_up`` to run on ``loop`` at the next hand-over (thread-safe)."""
        self._queue.append((loop, follow_up))

    def hand_over(self) -> None:
        """Send what is queued to its loops: one call per loop. A closed loop's are dropped:
        nothing waits on it any more."""
        if not self._queue:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[FollowUp]] = {}
        while self._queue:
            loop, follow_up = self._queue.popleft()
            by_loop.setdefault(loop, []).append(follow_up)
        for loop, follow_ups in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(_run_all, follow_ups)


def _run_all(follow_ups: list[FollowUp]) -> None:
    for follow_up in follow_ups:
        try:
            follow_up()
        except Exception:  # one follow-up's bug must not keep the others from running
            log.exception("a delivery follow-up failed")
