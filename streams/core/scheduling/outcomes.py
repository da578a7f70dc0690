"""What the scheduler answers: the fate of an offer, a released task, a removed task."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from streams.core.model import DeadLetterReason, Job


class OfferResult(enum.Enum):
    """What ``Scheduler.offer`` did with a task."""

    HELD = "HELD"
    """Queued; it will be released, removed or stay held. Never dropped, even when paused."""
    DUPLICATE = "DUPLICATE"
    """A task with this id is already held (or awaits its expiry report); nothing changed."""
    EXPIRED = "EXPIRED"
    """Already past its last start time: not held; the caller dead-letters it."""


@dataclass(frozen=True, slots=True)
class Released:
    """A task handed to an agent: it left the scheduler and now runs (or will) on ``agent_id``."""

    job: Job
    agent_id: str
    effective_priority: int
    """The priority it was released at: its level after aging, or -1 when escalated."""
    waited_ms: int
    """Time from ``job.submitted_ms`` to the release (0 if the submitter's clock ran ahead)."""


@dataclass(frozen=True, slots=True)
class Removed:
    """A task the scheduler gave up on by itself; the caller dead-letters it with ``reason``."""

    job: Job
    reason: DeadLetterReason
    """``EXPIRED`` (past its last start time) or ``NO_CAPABLE_AGENT``."""
