"""How long each constraint class has had no capable agent at all, and whose wait is over.

Theory of operation
-------------------
When the placer answers NEVER for a class's head, no agent could run any task of that class
(the class is exactly what decides capability). From then on (``since``) the class is
*orphaned*, until a placement for it succeeds or answers busy (``None``), which proves that a
capable agent exists. Each further NEVER *confirms* the orphan state (``confirmed``).

A task of an orphaned class is due for the dead letters (``NO_CAPABLE_AGENT``) once
``max(since, offered_ms) + timeout_ms <= confirmed``: the scheduler saw no capable agent both
when the wait started and after it had lasted ``timeout_ms``, and nothing in between said
otherwise. The clock is per task, so a task offered late into a long-orphaned class still gets
its full wait; and a class nobody tried lately (quotas, limits) is not condemned on old news.

Invariants:
- For each orphaned class a deque holds its tasks in offer order (built when it becomes
  orphaned, appended on offer while it stays so). Offers come with a non-decreasing clock, so
  that is also the order of due times and :meth:`due` pops from the left only.
- A class forgets its orphan state once its last task has left, so a later task's wait starts
  only when a NEVER is seen again.
- With ``timeout_ms`` None nothing is tracked and nothing is ever due.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from streams.core.scheduling.queues import ClassKey, HeldTask


class NoCapableTracker:
    """Orphaned classes, their tasks in offer order, and when each task's wait is over."""

    def __init__(self, timeout_ms: int | None) -> None:
        self._timeout_ms = timeout_ms
        self._since_ms: dict[ClassKey, int] = {}
        self._confirmed_ms: dict[ClassKey, int] = {}
        self._tasks: dict[ClassKey, deque[HeldTask]] = {}

    def saw_never(
        self, cls: ClassKey, now_ms: int, tasks_of: Callable[[ClassKey], Iterable[HeldTask]]
    ) -> None:
        """The placer found no capable agent for ``cls`` at ``now_ms``."""
        if self._timeout_ms is None:
            return
        self._confirmed_ms[cls] = now_ms
        if cls not in self._since_ms:
            self._since_ms[cls] = now_ms
            self._tasks[cls] = deque(sorted(tasks_of(cls), key=lambda task: task.seq))

    def saw_capable(self, cls: ClassKey) -> None:
        """A capable agent exists for ``cls`` (a placement succeeded or found it busy)."""
        if cls in self._since_ms:
            del self._since_ms[cls]
            del self._confirmed_ms[cls]
            del self._tasks[cls]

    def offered(self, task: HeldTask, cls: ClassKey) -> None:
        tasks = self._tasks.get(cls)
        if tasks is not None:
            tasks.append(task)

    def waiting_by_type(self) -> dict[str, int]:
        """Held tasks no live agent could run, per task type (tracked only with a timeout)."""
        counts: dict[str, int] = {}
        for cls, tasks in self._tasks.items():
            alive = sum(1 for task in tasks if task.alive)
            if alive:
                counts[cls[2]] = counts.get(cls[2], 0) + alive
        return counts

    def due(self) -> list[HeldTask]:
        """Live tasks whose wait without a capable agent is over (as last confirmed)."""
        expired: list[HeldTask] = []
        for cls in list(self._since_ms):
            tasks = self._tasks[cls]
            confirmed_ms = self._confirmed_ms[cls]
            while tasks and (not tasks[0].alive or self._due_ms(cls, tasks[0]) <= confirmed_ms):
                task = tasks.popleft()
                if task.alive:
                    expired.append(task)
            if not tasks:
                self.saw_capable(cls)  # no task left: forget the class
        return expired

    def next_ms(self, now_ms: int) -> int | None:
        """When a task becomes due by itself: already (<= now) or at a future time.

        A wait that ran out but awaits a fresh NEVER is left to the next release, which the
        caller makes anyway; reporting it would make a simulator spin at ``now_ms``.
        """
        times: list[int] = []
        for cls, tasks in self._tasks.items():
            while tasks and not tasks[0].alive:
                tasks.popleft()
            if tasks:
                due_ms = self._due_ms(cls, tasks[0])
                if due_ms <= self._confirmed_ms[cls] or due_ms > now_ms:
                    times.append(due_ms)
        return min(times) if times else None

    def _due_ms(self, cls: ClassKey, task: HeldTask) -> int:
        timeout_ms = self._timeout_ms if self._timeout_ms is not None else 0
        return max(self._since_ms[cls], task.offered_ms) + timeout_ms
