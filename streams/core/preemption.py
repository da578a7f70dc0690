"""Preemption: an urgent task that waits too long takes the slot of a preemptible one.

Theory of operation
-------------------
Opt-in per priority level (:class:`PreemptionConfig`): a task of a level in ``after_ms`` that is
still held ``after_ms[level]`` after its submission, while every agent it could run on is full,
has the youngest run of the lowest preemptible level (``victims``) on such an agent stopped for
it. The victim's agent is told to stop (``StopRun(preempted=True)``, the cancel's machinery);
when its run ends, the victim goes back to the queue *without spending an attempt*, and the
slot it frees is handed to the urgent task directly, before anything else may take it (a task
aged to the top could otherwise win it, and the urgent one would preempt again).

Why the youngest run: it has done the least work, so the least is lost. Against thrash, a task
is preempted at most ``max_per_task`` times (it then runs to its end; the count,
``Job.preempted``, travels with the task into the dispatcher's state); a victim is chosen only
from a level strictly less urgent than the waiting task's, so two urgent tasks never take each
other's slots; and one urgent task has at most one victim stopping for it at a time.

Races. The victim may end before the stop reaches it: its result ends it as any result would
(a success stands), and the slot still goes to the urgent task. It may be lost after the stop
(agent down, lease run out): it goes back without spending an attempt too, as the stop may be
what ended it. The urgent task may have gone meanwhile (dispatched elsewhere, cancelled,
expired): the freed slot is then released as usual.

This module holds the configuration and :class:`UrgentWatch`, the index of the held urgent
tasks by the time they become overdue; the distributor makes the decisions, with its tables.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from streams.core.model import Job
from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PreemptionConfig:
    """Which levels may preempt, after how long, and which levels may be preempted.

    Off by default: no level preempts."""

    after_ms: Mapping[int, int] = field(default_factory=dict)
    """Level -> how long (ms since submission) a held task of that level waits before it may
    preempt. Levels not named never preempt."""
    victims: frozenset[int] = frozenset()
    """The levels whose running tasks may be stopped for a more urgent one."""
    max_per_task: int = 1
    """How many times one task may be preempted; then it runs to its end."""

    def __post_init__(self) -> None:
        for level, wait_ms in self.after_ms.items():
            if level < 0:
                raise ConfigError(f"preemption: level {level} must be >= 0")
            if wait_ms < 0:
                raise ConfigError(f"preemption: after_ms of level {level} must be >= 0")
        if any(level < 0 for level in self.victims):
            shown = sorted(self.victims)
            raise ConfigError(f"preemption: victim levels must be >= 0 (got {shown})")
        if self.max_per_task < 1:
            raise ConfigError(f"preemption: max_per_task must be >= 1 (got {self.max_per_task})")
        object.__setattr__(self, "after_ms", dict(self.after_ms))  # private copy
        object.__setattr__(self, "victims", frozenset(self.victims))

    @property
    def enabled(self) -> bool:
        """Whether some level may preempt some other."""
        return any(victim > level for level in self.after_ms for victim in self.victims)

    def check_levels(self, levels: int) -> None:
        """ConfigError when a level named is not one of ``0 .. levels-1``."""
        named = sorted({*self.after_ms, *self.victims})
        outside = [level for level in named if level >= levels]
        if outside:
            raise ConfigError(
                f"preemption: levels {outside} do not exist (levels are 0..{levels - 1})"
            )

    def victim_levels_for(self, job: Job) -> list[int]:
        """The levels a victim for ``job`` may be of, least urgent first."""
        return sorted((v for v in self.victims if v > job.priority), reverse=True)


_PRUNE_FLOOR = 1_024


class UrgentWatch:
    """Held tasks of the levels that may preempt, by the time they become overdue.

    ``watch`` a task each time it is offered to the scheduler; ``advance(now_ms)`` as time
    passes; ``overdue()`` yields the watched tasks whose wait has passed, oldest first, that
    ``is_held`` still says are held (the others are forgotten as they are met: no removal is
    needed when a task leaves). ``next_ms`` is never a time already passed, so a driver that
    sleeps until it does not spin while an overdue task finds nothing to preempt."""

    def __init__(self, config: PreemptionConfig, is_held: Callable[[str], bool]) -> None:
        self._config = config
        self._is_held = is_held
        self._pending: list[tuple[int, int, str, Job]] = []
        """Heap of (overdue at ms, seq, task id, job) not overdue yet."""
        self._overdue: dict[str, Job] = {}
        """Overdue and (last we looked) held, in the order they became overdue."""
        self._seq = 0
        self._kept = _PRUNE_FLOOR
        """Overdue entries at the last pruning (at least the floor): past twice as many, the
        ones that left are dropped, so the dict stays bounded by the held tasks even while
        nothing can be preempted (``overdue()`` is then not called)."""

    def __len__(self) -> int:
        return len(self._pending) + len(self._overdue)

    def watch(self, job: Job) -> None:
        wait_ms = self._config.after_ms.get(job.priority)
        if wait_ms is None:
            return
        self._seq += 1
        heapq.heappush(self._pending, (job.submitted_ms + wait_ms, self._seq, job.task_id, job))

    def advance(self, now_ms: int) -> None:
        """The watched tasks whose wait has passed by ``now_ms`` are overdue."""
        pending = self._pending
        while pending and pending[0][0] <= now_ms:
            _, _, task_id, job = heapq.heappop(pending)
            if self._is_held(task_id):
                self._overdue[task_id] = job
        if len(self._overdue) > 2 * self._kept:
            self._overdue = {k: job for k, job in self._overdue.items() if self._is_held(k)}
            self._kept = max(_PRUNE_FLOOR, len(self._overdue))

    def overdue(self) -> Iterator[Job]:
        """The held tasks overdue, in the order they became overdue."""
        for task_id, job in list(self._overdue.items()):
            if self._is_held(task_id):
                yield job
            else:
                del self._overdue[task_id]

    def next_ms(self) -> int | None:
        """When the next watched task becomes overdue (None: none will)."""
        pending = self._pending
        while pending and not self._is_held(pending[0][2]):
            heapq.heappop(pending)  # it left the queue before its time came
        return pending[0][0] if pending else None
