"""Ordered acknowledgement: an input event is acked only when it and every earlier event of
its partition are done.

Faust commits the contiguous run of acknowledged offsets, but its guard against a gap at the
head is off by one (FAUST.md, issue #606). So we never hand Faust an ack out of order: each
partition keeps its events in offset order and acks the done prefix.

Memory: a token lives as long as its task is held (possibly 100,000s of them), so it keeps
only what the ack needs. An event's ack may be a callable of its own (``ack()``), or one
callable shared by many tokens applied to the token's ``subject`` (``ack(subject)``): the
dispatcher's inputs keep Faust's ``Message`` (whose ``ack`` does Faust's offset bookkeeping)
rather than the whole ``Event`` behind a bound ``event.ack``.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

NO_SUBJECT: Final[Any] = object()
"""``Token.subject`` of a token whose ``ack`` takes no argument."""


@dataclass(eq=False, slots=True)
class Token:
    """One input event awaiting its acknowledgement; where it came from, for dead letters."""

    topic: str
    partition: int
    offset: int
    ack: Callable[..., object]
    """Acknowledges the event: called as ``ack()``, or ``ack(subject)`` when it has one."""
    subject: Any = field(default=NO_SUBJECT)
    """What a shared ``ack`` acknowledges (e.g. Faust's message); ``NO_SUBJECT``: none."""
    done: bool = field(default=False)

    def acknowledge(self) -> object:
        """Hand the acknowledgement on (``OrderedAcks`` calls it in offset order)."""
        if self.subject is NO_SUBJECT:
            return self.ack()
        return self.ack(self.subject)


class OrderedAcks:
    """Per (topic, partition), the events not yet acked, in offset order."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, int], deque[Token]] = {}

    def track(
        self,
        topic: str,
        partition: int,
        offset: int,
        ack: Callable[..., object],
        subject: Any = NO_SUBJECT,
    ) -> Token:
        """Start tracking an event read from ``topic``/``partition`` at ``offset``; once done
        it is acked by ``ack()``, or by ``ack(subject)`` if a ``subject`` is given."""
        token = Token(topic, partition, offset, ack, subject)
        queue = self._queues.setdefault((topic, partition), deque())
        if queue and queue[-1].offset >= offset:  # read again after a seek: keep the order
            items = list(queue)
            bisect.insort(items, token, key=lambda item: item.offset)
            queue.clear()
            queue.extend(items)
        else:
            queue.append(token)
        return token

    def done(self, token: Token) -> None:
        """``token``'s event is finished; ack it and every done event after an acked prefix."""
        token.done = True
        queue = self._queues.get((token.topic, token.partition))
        while queue and queue[0].done:
            queue.popleft().acknowledge()

    def pending(self) -> int:
        """Events tracked and not yet acked (for status views and tests)."""
        return sum(len(queue) for queue in self._queues.values())

    def forget(self, topic: str, partition: int) -> None:
        """Drop the events of a partition this instance no longer owns (after a rebalance)."""
        self._queues.pop((topic, partition), None)
