"""A simulated agent: slots, speed, a local FIFO, crashes and recoveries.

Invariants (checked here, for every strategy):

1. An agent never runs more tasks than it has slots: ``_start`` raises :class:`CoreError`
   before it would, and ``peak_running`` records the most it ever ran at once.
2. A task delivered while every slot is busy waits in the agent's own FIFO (what a push
   baseline relies on: unlimited prefetch) and starts when a slot frees, in arrival order.
3. Tasks wait in the FIFO only while every slot is busy. Starting one from the FIFO while a
   more urgent task (lower priority number) waits behind it is a *local priority inversion*
   (counted in ``inversions``): the distributor cannot see it, it is what push costs.
4. A crash loses every run and every queued task, and bumps ``incarnation``: finish events of
   the old incarnation are then stale and ignored. A crashed agent accepts nothing (its
   assignments would be fenced by their epoch when it comes back).

Times are integer ms; a task of ``work`` units runs ``round(1000 * work / speed)`` ms.
"""

from __future__ import annotations

import hashlib
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
        "_running",
        "_up_since_ms",
        "_waiting",
        "_waiting_levels",
        "agent_id",
        "busy_ms",
        "capacity",
        "group",
        "incarnation",
        "inversions",
        "peak_running",
        "queued",
        "speed",
        "up",
    )

    def __init__(self, agent_id: str, group: AgentGroup) -> None:
        self.agent_id = agent_id
        self.group = group
        self.capacity = group.capacity
        self.speed = group.speed
        self.up = True
        self.incarnation = 0
        self.peak_running = 0
        self.queued = 0
        """Deliveries that found every slot busy and waited in the local FIFO."""
        self.inversions = 0
        """Starts from the FIFO while a more urgent task waited in it (invariant 3)."""
        self.busy_ms = 0
        """Slot-ms spent running (runs cut short by a crash count up to the crash)."""
        self._running: dict[tuple[str, int], int] = {}
        """(task id, attempt) -> start time (ms) of the runs in progress."""
        self._waiting: deque[tuple[Job, float]] = deque()
        self._waiting_levels: dict[int, int] = {}
        """Priority level -> tasks of that level in the FIFO."""
        self._available_ms = 0
        self._up_since_ms = 0

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def heartbeat(self, now_ms: int) -> Heartbeat:
        """The heartbeat it sends at ``now_ms`` (always READY while up)."""
        group = self.group
        return Heartbeat(
            self.agent_id,
            self.capacity,
            group.skills,
            group.zone,
            group.weight,
            group.cost_per_task,
            "READY",
            now_ms,
        )

    def deliver(self, job: Job, work: float, now_ms: int) -> Start | None:
        """An assignment arrives: start it at once if a slot is free, else queue it (FIFO)."""
        if not self.up:
            return None
        if len(self._running) < self.capacity:
            return self._start(job, work, now_ms)
        self._waiting.append((job, work))
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
        if not self._waiting:
            return (True, None)
        return (True, self._start_waiting(now_ms))

    def crash(self, now_ms: int) -> int:
        """Lose every run and queued task; return how many were lost."""
        if not self.up:
            return 0
        lost = len(self._running) + len(self._waiting)
        self.busy_ms += sum(now_ms - started_ms for started_ms in self._running.values())
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

    def _start_waiting(self, now_ms: int) -> Start:
        """Start the head of the FIFO, noting an inversion if a more urgent task waits."""
        job, work = self._waiting.popleft()
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
        self._running[run] = now_ms
        self.peak_running = max(self.peak_running, len(self._running))
        run_ms = round(1000.0 * work / self.speed)
        return Start(job, now_ms, now_ms + run_ms, self.incarnation)


def failure_draw(seed: int, task_id: str, attempt: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, task, attempt): the same for every strategy.

    A shared sequential generator would hand a task a different number whenever another
    strategy reorders the runs; hashing keeps a run's fate independent of the order.
    """
    key = f"{seed}:{task_id}:{attempt}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
