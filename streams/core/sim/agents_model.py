"""A simulated agent: slots, speed, a local queue (and prefetch), crashes and recoveries.

Invariants (checked here, for every strategy):

1. An agent never runs more tasks than it has slots: ``_start`` raises :class:`CoreError`
   before it would, and ``peak_running`` records the most it ever ran at once.
2. A task delivered while every slot is busy waits in the agent's own queue and starts when a
   slot frees: in arrival order (a FIFO: what a push baseline relies on, unlimited prefetch),
   or, for a group with ``prefetch`` (a real agent behind a dispatcher's prefetch share,
   which announces ``capacity + prefetch`` slots), most urgent first: priority, then
   deadline, then arrival, as a real agent's runner orders what it fetched (it also starts
   one overtaken for 2 s; with a few prefetched tasks that hardly happens, so not modelled).
3. Tasks wait only while every slot is busy. Starting one while a more urgent task (lower
   priority number) waits behind it is a *local priority inversion* (counted in
   ``inversions``): the distributor cannot see it, it is what push costs. Most urgent first,
   there are none.
4. A crash loses every run and every queued task, and bumps ``incarnation``: finish events of
   the old incarnation are then stale and ignored. A crashed agent accepts nothing (its
   assignments would be fenced by their epoch when it comes back).

Times are integer ms; a task of ``work`` units runs ``round(1000 * work / speed)`` ms.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import deque
from dataclasses import dataclass

from streams.core.agents import Heartbeat
from streams.core.model import Job
from streams.core.sim.spec import AgentGroup
from streams.errors import CoreError


@dataclass(frozen=True, slots=True)
class Start:
    """The agent started ``job``; it finishes at ``finish_ms`` unless the agent crashes first."""

    job: Job
    started_ms: int
    finish_ms: int
    incarnation: int


class SimAgent:
    """One agent of a group; the engine feeds it deliveries, finishes, crashes and recoveries."""

    __slots__ = (
        "_available_ms",
        "_occupied_ms",
        "_occupied_since_ms",
        "_running",
        "_up_since_ms",
        "_waiting",
        "_waiting_levels",
        "agent_id",
        "busy_ms",
        "capacity",
        "draining",
        "group",
        "incarnation",
        "inversions",
        "peak_running",
        "prefetch",
        "queued",
        "speed",
        "up",
    )

    def __init__(self, agent_id: str, group: AgentGroup, started_ms: int = 0) -> None:
        self.agent_id = agent_id
        self.group = group
        self.capacity = group.capacity
        self.speed = group.speed
        self.prefetch = group.prefetch
        self.up = True
        self.draining = False
        """Told to stop (scaled in): it announces DRAINING, takes no more work and stops once
        idle."""
        self.incarnation = 0
        self.peak_running = 0
        self.queued = 0
        """Deliveries that found every slot busy and waited in the local queue."""
        self.inversions = 0
        """Starts from the local queue while a more urgent task waited in it (invariant 3)."""
        self.busy_ms = 0
        """Slot-ms spent running (runs cut short by a crash count up to the crash)."""
        self._running: dict[tuple[str, int], int] = {}
        """(task id, attempt) -> start time (ms) of the runs in progress."""
        self._waiting = LocalQueue(urgent_first=group.prefetch > 0)
        self._waiting_levels: dict[int, int] = {}
        """Priority level -> tasks of that level waiting."""
        self._available_ms = 0
        self._up_since_ms = started_ms
        """Up from ``started_ms`` (an agent an autoscaler starts during the run)."""
        self._occupied_ms = 0
        """Ms with at least one task running, up to the last time none was (closed spans)."""
        self._occupied_since_ms = 0
        """When the current span with at least one task running began (while one runs)."""

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def heartbeat(self, now_ms: int) -> Heartbeat:
        """The heartbeat it sends at ``now_ms`` (READY while up, DRAINING once scaled in): its
        slots, and its prefetch places as slots too (what a dispatcher counts for a real
        agent)."""
        group = self.group
        return Heartbeat(
            self.agent_id,
            self.capacity + self.prefetch,
            group.skills,
            group.zone,
            group.weight,
            group.cost_per_task,
            "DRAINING" if self.draining else "READY",
            now_ms,
        )

    def deliver(self, job: Job, work: float, now_ms: int) -> Start | None:
        """An assignment arrives: start it at once if a slot is free, else queue it."""
        if not self.up:
            return None
        if len(self._running) < self.capacity:
            return self._start(job, work, now_ms)
        self._waiting.push(job, work)
        levels = self._waiting_levels
        levels[job.priority] = levels.get(job.priority, 0) + 1
        self.queued += 1
        return None

    def finish(self, job: Job, incarnation: int, now_ms: int) -> tuple[bool, Start | None]:
        """A run ends at ``now_ms``: (whether it was live, the next queued task started)."""
        started_ms = (
            self._running.pop((job.task_id, job.attempt), None)
            if incarnation == self.incarnation
            else None
        )
        if started_ms is None:
            return (False, None)
        self.busy_ms += now_ms - started_ms
        if not self._running:
            self._occupied_ms += now_ms - self._occupied_since_ms
        if not self._waiting:
            return (True, None)
        return (True, self._start_waiting(now_ms))

    def started_ms(self, job: Job) -> int | None:
        """When its run of ``job`` (that attempt) started; None when it does not run it."""
        return self._running.get((job.task_id, job.attempt))

    def unqueue(self, job: Job) -> bool:
        """Drop ``job`` from the local queue (stopped before it started); False if absent."""
        if not self._waiting.remove(job):
            return False
        self._waiting_levels[job.priority] -= 1
        return True

    def crash(self, now_ms: int) -> int:
        """Lose every run and queued task; return how many were lost."""
        if not self.up:
            return 0
        lost = len(self._running) + len(self._waiting)
        self.busy_ms += sum(now_ms - started_ms for started_ms in self._running.values())
        if self._running:
            self._occupied_ms += now_ms - self._occupied_since_ms
        self._running.clear()
        self._waiting.clear()
        self._waiting_levels.clear()
        self._available_ms += self.capacity * (now_ms - self._up_since_ms)
        self.up = False
        self.incarnation += 1
        return lost

    def recover(self, now_ms: int) -> None:
        """Come back empty at ``now_ms``."""
        if self.up:
            return
        self.up = True
        self.incarnation += 1
        self._up_since_ms = now_ms

    def available_ms(self, now_ms: int) -> int:
        """Slot-ms the agent was up for, up to ``now_ms``."""
        open_ms = self.capacity * (now_ms - self._up_since_ms) if self.up else 0
        return self._available_ms + open_ms

    def busy_at(self, now_ms: int) -> int:
        """Slot-ms spent running up to ``now_ms`` (runs in progress counted so far)."""
        return self.busy_ms + sum(now_ms - started_ms for started_ms in self._running.values())

    def occupied_at(self, now_ms: int) -> int:
        """Ms with at least one task running up to ``now_ms``, however many ran: the time the
        agent could not have been powered down or scaled in."""
        open_ms = now_ms - self._occupied_since_ms if self._running else 0
        return self._occupied_ms + open_ms

    def _start_waiting(self, now_ms: int) -> Start:
        """Start the next waiting task, noting an inversion if a more urgent one waits."""
        job, work = self._waiting.pop()
        levels = self._waiting_levels
        levels[job.priority] -= 1
        if any(count for level, count in levels.items() if level < job.priority):
            self.inversions += 1
        return self._start(job, work, now_ms)

    def _start(self, job: Job, work: float, now_ms: int) -> Start:
        if len(self._running) >= self.capacity:
            raise CoreError(f"agent {self.agent_id} would run more than {self.capacity} tasks")
        run = (job.task_id, job.attempt)
        if run in self._running:
            raise CoreError(f"agent {self.agent_id} was given attempt {run} twice")
        if not self._running:
            self._occupied_since_ms = now_ms
        self._running[run] = now_ms
        self.peak_running = max(self.peak_running, len(self._running))
        run_ms = round(1000.0 * work / self.speed)
        return Start(job, now_ms, now_ms + run_ms, self.incarnation)


class LocalQueue:
    """What waits at an agent for a slot: in arrival order, or most urgent first."""

    __slots__ = ("_fifo", "_heap", "_seq", "_urgent_first")

    def __init__(self, *, urgent_first: bool) -> None:
        self._urgent_first = urgent_first
        self._fifo: deque[tuple[Job, float]] = deque()
        self._heap: list[tuple[int, float, int, Job, float]] = []
        """(priority, deadline or inf, arrival number, job, work): a heap."""
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap) if self._urgent_first else len(self._fifo)

    def push(self, job: Job, work: float) -> None:
        if not self._urgent_first:
            self._fifo.append((job, work))
            return
        self._seq += 1
        deadline = math.inf if job.deadline_ms is None else job.deadline_ms
        heapq.heappush(self._heap, (job.priority, deadline, self._seq, job, work))

    def pop(self) -> tuple[Job, float]:
        """The next task to start (the queue must not be empty)."""
        if not self._urgent_first:
            return self._fifo.popleft()
        _, _, _, job, work = heapq.heappop(self._heap)
        return (job, work)

    def remove(self, job: Job) -> bool:
        """Take out the entry of ``job`` (that attempt), wherever it is; False if absent."""
        run = (job.task_id, job.attempt)
        if not self._urgent_first:
            for index, (queued, _) in enumerate(self._fifo):
                if (queued.task_id, queued.attempt) == run:
                    del self._fifo[index]
                    return True
            return False
        for index, entry in enumerate(self._heap):
            if (entry[3].task_id, entry[3].attempt) == run:
                self._heap[index] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                return True
        return False

    def clear(self) -> None:
        self._fifo.clear()
        self._heap.clear()


def failure_draw(seed: int, task_id: str, attempt: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, task, attempt): the same for every strategy.

    A shared sequential generator would hand a task a different number whenever another
    strategy reorders the runs; hashing keeps a run's fate independent of the order.
    """
    key = f"{seed}:{task_id}:{attempt}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
