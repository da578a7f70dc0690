"""Wire records to the core's value types: what the scheduler and router see of a task."""

from __future__ import annotations

from streams.core.model import Job
from streams.wire.records import Task

DEFAULT_COST = 1.0
"""The work units of a task that states no cost."""

_SKILL_SETS_KEPT = 1024
"""How many distinct skill sets ``skill_set`` shares before it starts afresh (a bound, so
tasks with ever new skills cannot grow it without end)."""

_skill_sets: dict[tuple[str, ...], frozenset[str]] = {(): frozenset()}


def task_to_job(task: Task, ref: object = None, *, preempted: int = 0) -> Job:
    """The core's view of ``task``: absolute deadline and expiry, skills as a set; ``ref`` is
    the caller's own handle on it (``Job.ref``); ``preempted``: its runs stopped so far for a
    more urgent task (kept in the dispatcher's state, not on the task).

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
        required_skills=skill_set(task.required_skills),
        zone=task.zone,
        target_agent=task.target_agent,
        affinity_key=task.affinity_key,
        cost=DEFAULT_COST if task.cost is None else task.cost,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        preempted=preempted,
        headers=task.headers,
        ref=ref,
    )


def skill_set(skills: tuple[str, ...]) -> frozenset[str]:
    """``frozenset(skills)``, one shared object per distinct tuple of skills.

    Every held job keeps its skill set, and most tasks ask for none or the same few: sharing
    the (immutable) sets saves an object per job (an empty frozenset alone is 216 bytes).
    """
    shared = _skill_sets.get(skills)
    if shared is None:
        if len(_skill_sets) >= _SKILL_SETS_KEPT:
            _skill_sets.clear()
            _skill_sets[()] = frozenset()
        shared = _skill_sets[skills] = frozenset(skills)
    return shared
