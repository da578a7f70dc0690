"""When a type's group goes: full, or held long enough, or a task's last start is near.

A group of a batch type is *full* once as many of its tasks are held as the group's size
(``GroupLimit.size``). One that is not full is held until ``wait_ms`` after its longest-held
task was offered, and never past ``wait_ms`` before the nearest last start (deadline or TTL)
among its tasks: a task that could have waited no more than that is not held at all, so the
hold never makes a task expire. Time is an argument; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streams.core.grouping.config import GroupingConfig
from streams.core.grouping.handlers import AgentLookup, BatchHandler, BatchHandlers, GroupLimit
from streams.core.grouping.waiting import WaitingByType
from streams.core.scheduling.queues import HeldTask

HeldOfType = Callable[[str], Iterable[HeldTask]]


class Grouping:
    """The announced batch handlers and the held tasks per type, and the rule of the module."""

    def __init__(self, config: GroupingConfig) -> None:
        self.config = config
        self.handlers = BatchHandlers()
        self.waiting = WaitingByType()

    @property
    def active(self) -> bool:
        """Whether any task type may be grouped now: on, and some agent announces a batch
        handler."""
        return self.config.enabled and bool(self.handlers)

    def heard(
        self, agent_id: str, handlers: tuple[BatchHandler, ...], held_of_type: HeldOfType
    ) -> None:
        """An agent's heartbeat named its batch handlers; ``held_of_type``: the tasks of a type
        held now, to count those of a type newly announced."""
        new, gone = self.handlers.heard(agent_id, handlers)
        if not self.config.enabled:
            return
        for task_type in new:
            self.waiting.watch(task_type, held_of_type(task_type))
        for task_type in gone:
            self.waiting.unwatch(task_type)

    def limit(self, task_type: str, agent: AgentLookup) -> GroupLimit | None:
        """How ``task_type`` is grouped now; None: it is not (off, or no agent batches it)."""
        if not self.config.enabled:
            return None
        return self.handlers.limit(task_type, agent, self.config.max_wait_ms)

    def due_ms(self, task_type: str, limit: GroupLimit) -> int | None:
        """When the held group of ``task_type`` goes even if not full (None: nothing held)."""
        first_ms = self.waiting.first_offered_ms(task_type)
        if first_ms is None:
            return None
        due_ms = first_ms + limit.wait_ms
        nearest_ms = self.waiting.nearest_last_start_ms(task_type)
        if nearest_ms is not None:
            due_ms = min(due_ms, nearest_ms - limit.wait_ms)
        return due_ms

    def ready(self, task_type: str, limit: GroupLimit, now_ms: int) -> bool:
        """Whether the held tasks of ``task_type`` may go now: the group is full or due."""
        if self.waiting.count(task_type) >= limit.size:
            return True
        due_ms = self.due_ms(task_type, limit)
        return due_ms is None or due_ms <= now_ms

    def next_release_ms(self, agent: AgentLookup, after_ms: int | None = None) -> int | None:
        """The earliest time a held group that is not full becomes due, later than
        ``after_ms`` (a group due by then was tried then: what holds it changes with an event,
        not with time, and it must not hide the others' due times)."""
        times: list[int] = []
        for task_type in self.handlers.types():
            count = self.waiting.count(task_type)
            limit = self.limit(task_type, agent) if count else None
            if limit is None or count >= limit.size:
                continue
            due_ms = self.due_ms(task_type, limit)
            if due_ms is not None and (after_ms is None or due_ms > after_ms):
                times.append(due_ms)
        return min(times, default=None)
