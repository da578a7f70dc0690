"""Effective priority: a task's level after aging and escalation, as a pure function of time.

Theory of operation
-------------------
A task of level ``p`` submitted at ``s`` has, at time ``t``::

    ESCALATED (-1)                      if its last start time L is known and L - t < escalation_ms
    p                                   if aging is off (strict priority)
    max(0, p - (t - s) // aging_ms)     otherwise (a wait before ``s`` counts as 0)

Invariants:
- It never rises with time: aging only lowers it, escalation is final (until the task expires).
- It is constant on ``[t, next_change_ms(t))`` and differs at ``next_change_ms(t)``; ``None``
  means it stays as it is for as long as the task is held. The scheduler keeps a timer per
  queue on this, so it never rescans queues to find which ones aged.
- ``escalation_ms == 0`` disables escalation (no time is strictly less than 0 ahead).
"""

from __future__ import annotations

from typing import Final

from streams.core.model import Job

ESCALATED: Final = -1
"""The effective priority of an escalated task: above every level."""


def effective_priority(job: Job, now_ms: int, *, aging_ms: int | None, escalation_ms: int) -> int:
    """The priority ``job`` competes at when it heads its queue at ``now_ms``."""
    return evaluate(job, now_ms, aging_ms=aging_ms, escalation_ms=escalation_ms)[0]


def next_change_ms(
    job: Job, now_ms: int, *, aging_ms: int | None, escalation_ms: int
) -> int | None:
    """The first time after ``now_ms`` at which ``effective_priority`` of ``job`` changes."""
    return evaluate(job, now_ms, aging_ms=aging_ms, escalation_ms=escalation_ms)[1]


def evaluate(
    job: Job, now_ms: int, *, aging_ms: int | None, escalation_ms: int
) -> tuple[int, int | None]:
    """``effective_priority`` and ``next_change_ms`` at once, as the scheduler needs them."""
    last_start_ms = job.last_start_ms()
    escalates_at_ms: int | None = None
    if last_start_ms is not None:
        if last_start_ms - now_ms < escalation_ms:
            return ESCALATED, None
        if escalation_ms > 0:
            escalates_at_ms = last_start_ms - escalation_ms + 1
    if aging_ms is None:
        return job.priority, escalates_at_ms
    steps = max(0, now_ms - job.submitted_ms) // aging_ms
    if job.priority - steps <= 0:
        return 0, escalates_at_ms
    ages_at_ms = job.submitted_ms + (steps + 1) * aging_ms
    if escalates_at_ms is not None and escalates_at_ms < ages_at_ms:
        return job.priority - steps, escalates_at_ms
    return job.priority - steps, ages_at_ms
