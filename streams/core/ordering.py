"""Ordered keys: the tasks sharing an ordering key run one at a time, in the order they arrived.

Parallel Consumer's key-ordered mode, with priorities between keys: a task whose key is free
becomes the key's *head* and is scheduled like any other task (priority, aging, fair share);
a task whose key has a head waits *behind* it, out of the scheduler, until every task of the
key that arrived before it has ended. The head keeps the key through everything short of its
end: a retry's backoff, a failover (taken back and queued again), a dispatcher restart (its
lease or its retry is recovered from the changelog before any input is read, and the tasks
behind it are read again from their input, in offset order).

Arrival order is the order of the shard's inputs: a producer keeps a key's tasks in order by
giving them one Kafka key (the client uses the ordering key), so they share a partition, and
one priority level, so they share a topic. Tasks of one key at different priorities still run
one at a time, in the order the dispatcher read them.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque


class KeyQueues:
    """Per ordering key, the ids of its live tasks in arrival order; the first is its head."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[str]] = {}
        self._behind = 0

    def __len__(self) -> int:
        """Keys with a live task."""
        return len(self._queues)

    @property
    def behind(self) -> int:
        """Tasks waiting behind the head of their key."""
        return self._behind

    def enter(self, key: str, task_id: str) -> bool:
        """A task of ``key`` arrives: True when it is (or already was) the key's head and may be
        scheduled; False when it must wait behind it (it is queued, in arrival order)."""
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = deque((task_id,))
            return True
        if queue[0] == task_id:  # the head coming back: a retry, a failover
            return True
        queue.append(task_id)
        self._behind += 1
        return False

    def leave(self, key: str, task_id: str) -> str | None:
        """A task of ``key`` ended (or was handed to another dispatcher): the next head, which
        may now be scheduled, when it was the head and another waits; else None."""
        queue = self._queues.get(key)
        if queue is None:
            return None
        if queue[0] != task_id:
            try:
                queue.remove(task_id)
            except ValueError:
                return None
            self._behind -= 1
            return None
        queue.popleft()
        if not queue:
            del self._queues[key]
            return None
        self._behind -= 1
        return queue[0]

    def head(self, key: str) -> str | None:
        queue = self._queues.get(key)
        return None if queue is None else queue[0]
