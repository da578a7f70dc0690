"""Decisions the distributor hands to its driver (the dispatcher or the simulator).

The core never performs I/O: the events it is given return a list of these, and the driver
carries them out (write an assignment, a retry, a dead letter; pause or resume reading). Every
action about a task carries its ``job``, whose ``ref`` is the driver's own handle on it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from streams.core.model import DeadLetterReason, Job


class ResultStatus(enum.Enum):
    """How an agent says a run ended (``TaskResult.status`` of the wire format)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    RETRYABLE = "RETRYABLE"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send ``job`` to ``agent_id`` (its own partition of ``dispatch``) under a lease."""

    job: Job
    agent_id: str
    epoch: int
    """The agent's incarnation (``Heartbeat.incarnation``) the assignment is for."""
    lease_ms: int
    dispatched_ms: int
    grouped: bool = False
    """One of a group gathered for the agent's batch handler, which may take it at once."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """``job`` was delivered again while it is known (waiting, in flight, or ended recently):
    nothing is done with this delivery."""

    job: Job


@dataclass(frozen=True, slots=True)
class Finished:
    """An agent's result was taken: its run of ``job`` ended with ``status``. The action that
    settles the task (completed, retried, dead-lettered, requeued) follows."""

    job: Job
    agent_id: str
    status: ResultStatus


@dataclass(frozen=True, slots=True)
class Retry:
    """Send ``job`` (its ``attempt`` already counted) to retry tier ``tier``, due at ``due_ms``."""

    job: Job
    tier: int
    due_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The task ends in the dead letters: ``job`` with a reason and the error."""

    job: Job
    reason: DeadLetterReason
    error: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Completed:
    """The task ended: it succeeded, or was cancelled."""

    job: Job
    agent_id: str
    status: ResultStatus


@dataclass(frozen=True, slots=True)
class Requeued:
    """The task went back to the queue after failover (agent down) or a lease that ran out."""

    job: Job
    agent_id: str
    cause: str


@dataclass(frozen=True, slots=True)
class PauseIntake:
    """Back-pressure: the scheduler holds its maximum; stop reading the task topics."""


@dataclass(frozen=True, slots=True)
class ResumeIntake:
    """The scheduler drained below its low watermark; read the task topics again."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The task ended, cancelled before it ran (held, waiting, behind its key, or not yet
    arrived when the cancel came): its outcome is CANCELLED."""

    job: Job


@dataclass(frozen=True, slots=True)
class StopRun:
    """Tell ``agent_id`` to stop its run of ``job``. Cancelled while running: its result, or
    its loss, ends the task CANCELLED. ``preempted``: its slot is wanted for a more urgent task
    (``preemption.py``); its result, or its loss, queues it again without spending an attempt.
    Either way a success that came first stands."""

    job: Job
    agent_id: str
    epoch: int
    preempted: bool = False


Action = (
    Dispatch
    | Dropped
    | Finished
    | Retry
    | DeadLetter
    | Completed
    | Requeued
    | PauseIntake
    | ResumeIntake
    | Cancelled
    | StopRun
)
