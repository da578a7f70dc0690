"""Per-class queues of held tasks: earliest deadline first, then arrival.

Theory of operation
-------------------
Tasks are queued by (priority level, tenant, constraint class), the class being what decides
which agents may run a task: its required skills and its manual target. A task that no free
agent can run therefore blocks only its own class, never the tasks of others (no head-of-line
blocking across classes).

Within a queue the order is :func:`order_key`: the last start time first (the earlier of
deadline and TTL, ``Job.last_start_ms``; none sorts last), then ``submitted_ms`` (a retried
task keeps its original submission and goes ahead of younger ones), then the offer sequence
number. The sequence number is unique, so the order is total and never compares two jobs.

Invariants:
- A task leaves its queue only by :meth:`TaskQueue.pop` (the head) or
  :meth:`TaskQueue.discard` (anywhere); either marks its :class:`HeldTask` dead, which is how
  the other indexes (expiry, no-capable-agent) recognise their stale entries.
- Discarded entries are skipped lazily; the heap is rebuilt once they outnumber the live ones
  (plus a small slack), so memory stays proportional to the tasks held.
- Between calls the top of a non-empty heap is live and is ``front``, so ``head`` is O(1).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from streams.core.model import Job

ClassKey = tuple[frozenset[str], str | None, str]
"""A constraint class: required skills, manual target agent and task type (agents handle some
types only)."""

QueueKey = tuple[int, str, ClassKey]
"""A queue: priority level, tenant, constraint class."""

NO_DEADLINE_MS: Final = 2**62
"""Sort key of a task without a last start time: after every real time."""

_COMPACT_SLACK: Final = 64


def class_of(job: Job) -> ClassKey:
    """The constraint class of ``job``: which agents can run it."""
    return (job.required_skills, job.target_agent, job.task_type)


@dataclass(slots=True, eq=False)
class HeldTask:
    """One held task and where it is; ``alive`` turns False for good when it leaves."""

    job: Job
    seq: int
    """Offer order, unique per scheduler."""
    offered_ms: int
    queue: TaskQueue
    alive: bool = True


Entry = tuple[int, int, int, HeldTask]
"""(last start or NO_DEADLINE_MS, submitted_ms, seq, task): compared on the first three only."""


def order_key(job: Job, seq: int) -> tuple[int, int, int]:
    """Where ``job`` (offered as number ``seq``) stands in its queue: smaller goes first."""
    last_start_ms = job.last_start_ms()
    deadline_key = NO_DEADLINE_MS if last_start_ms is None else last_start_ms
    return (deadline_key, job.submitted_ms, seq)


class TaskQueue:
    """The held tasks of one (level, tenant, class), earliest deadline first, then arrival."""

    __slots__ = (
        "_dead",
        "_heap",
        "_live",
        "alive",
        "cls",
        "eff",
        "front",
        "key",
        "tenant",
        "timer_ms",
    )

    def __init__(self, key: QueueKey) -> None:
        self.key = key
        self.tenant = key[1]
        self.cls = key[2]
        self.eff: int | None = None
        """Effective priority it is indexed at (owned by ``LevelIndex``); None: not indexed."""
        self.timer_ms: int | None = None
        """Earliest pending re-evaluation (owned by ``LevelIndex``)."""
        self.alive = True
        """False once emptied and forgotten; a new queue object replaces it."""
        self.front: Entry
        """The head's entry, kept up to date so queues compare by head in C (``min`` with
        ``attrgetter``); meaningless while the queue is empty (it is then not indexed)."""
        self._heap: list[Entry] = []
        self._live = 0
        self._dead = 0

    @property
    def level(self) -> int:
        return self.key[0]

    def __len__(self) -> int:
        return self._live

    @property
    def head(self) -> HeldTask:
        """The task this queue releases next (the queue must not be empty)."""
        return self.front[3]

    def push(self, task: HeldTask) -> None:
        heapq.heappush(self._heap, (*order_key(task.job, task.seq), task))
        self.front = self._heap[0]
        self._live += 1

    def pop(self) -> HeldTask:
        """Remove and return the head."""
        task = heapq.heappop(self._heap)[3]
        task.alive = False
        self._live -= 1
        self._drop_dead_top()
        return task

    def discard(self, task: HeldTask) -> None:
        """Remove ``task``, wherever it stands (lazily: its entry is skipped later)."""
        task.alive = False
        self._live -= 1
        self._dead += 1
        self._drop_dead_top()
        if self._dead > self._live + _COMPACT_SLACK:
            self._heap = [entry for entry in self._heap if entry[3].alive]
            heapq.heapify(self._heap)
            self._dead = 0
            if self._heap:
                self.front = self._heap[0]

    def close(self) -> None:
        """The queue is empty and forgotten: drop the last head it still points to."""
        self.alive = False
        del self.front

    def tasks(self) -> Iterator[HeldTask]:
        """The live tasks, in no particular order."""
        return (entry[3] for entry in self._heap if entry[3].alive)

    def _drop_dead_top(self) -> None:
        heap = self._heap
        while heap and not heap[0][3].alive:
            heapq.heappop(heap)
            self._dead -= 1
        if heap:
            self.front = heap[0]
