"""The dispatcher's handle on a task (the core's ``Job.ref``): the wire record and its input.

The core carries it along in every action about the task; the dispatcher reads it to build the
records it writes (the assignment, the retry, the dead letter, the durable state) and to mark
the input record finished once the task no longer needs it.
"""

from __future__ import annotations

import dataclasses

from streams.adapters.offsets import OffsetTracker
from streams.wire import Task


class Origin:
    """A task as read, its shard, and the input record it came from (if it still counts)."""

    __slots__ = ("offset", "shard", "task", "topic", "tracker")

    def __init__(
        self,
        task: Task,
        shard: int,
        *,
        topic: str | None = None,
        offset: int = -1,
        tracker: OffsetTracker | None = None,
    ) -> None:
        self.task = task
        self.shard = shard
        """The partition of its input topic: its results, retries and state live there."""
        self.topic = topic
        """The input topic it was read from (None: recovered from the state changelog)."""
        self.offset = offset
        self.tracker = tracker
        """Its input partition's commit bookkeeping, until the input record is finished."""

    def task_at(self, attempt: int) -> Task:
        """The wire task as of ``attempt`` (the core counts attempts on its job)."""
        task = self.task
        return task if task.attempt == attempt else dataclasses.replace(task, attempt=attempt)

    def finish_input(self) -> None:
        """The input record is no longer needed (the task is dispatched with durable state,
        ended, sent to a retry tier, or dropped as a duplicate); idempotent."""
        tracker = self.tracker
        if tracker is not None:
            self.tracker = None
            tracker.finish(self.offset)
