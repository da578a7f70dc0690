"""Wire records to the core's value types: what the scheduler and router see of a task."""

from __future__ import annotations

from streams.core.model import Job
from streams.wire.records import Task

DEFAULT_COST = 1.0
"""The work units of a task that states no cost."""


def task_to_job(task: Task) -> Job:
    """The core's view of ``task``: absolute deadline and expiry, skills as a set.

    ``expires_ms`` is ``submitted_at + ttl_ms`` (None without a TTL); headers stay sorted pairs.
    """
    return Job(
        task_id=task.task_id,
        priority=task.priority,
        submitted_ms=task.submitted_at,
        tenant=task.tenant,
        task_type=task.type,
        deadline_ms=task.deadline,
        expires_ms=None if task.ttl_ms is None else task.submitted_at + task.ttl_ms,
        required_skills=frozenset(task.required_skills),
        zone=task.zone,
        target_agent=task.target_agent,
        affinity_key=task.affinity_key,
        cost=DEFAULT_COST if task.cost is None else task.cost,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        headers=task.headers,
    )
