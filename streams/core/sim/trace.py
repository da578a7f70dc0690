"""What a simulated run did, event by event: an optional record the engine keeps.

``Engine(..., trace=Trace())`` notes every dispatch, every run an agent took to its end (when
it started, when it ended, how), every dead letter, crash and recovery. It is for a driver
that measures a simulated run the way it measures a live one: ``taskd demo`` turns it into
the records the pipeline's topics would hold and computes the same figures from them, so the
live and the simulated run compare figure for figure.

A run lost in a crash, or still going when the simulation stops, has no entry in ``runs``: a
real agent reports nothing for it either. Without a trace the engine keeps none of this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.actions import DeadLetter, ResultStatus
from streams.core.model import DeadLetterReason, Job


@dataclass(frozen=True, slots=True)
class TracedDispatch:
    """The distributor sent ``job`` (this attempt) to ``agent_id`` at ``at_ms``."""

    at_ms: int
    agent_id: str
    job: Job


@dataclass(frozen=True, slots=True)
class TracedRun:
    """``agent_id`` ran ``job`` (this attempt) from ``started_ms`` to ``finished_ms``."""

    agent_id: str
    job: Job
    started_ms: int
    finished_ms: int
    status: ResultStatus


@dataclass(frozen=True, slots=True)
class TracedDeadLetter:
    """The task ended in the dead letters at ``at_ms``."""

    at_ms: int
    job: Job
    reason: DeadLetterReason
    error: str
    attempts: int


@dataclass(slots=True)
class Trace:
    """The events of one run, each list in time order."""

    dispatches: list[TracedDispatch] = field(default_factory=list)
    runs: list[TracedRun] = field(default_factory=list)
    dead_letters: list[TracedDeadLetter] = field(default_factory=list)
    crashes: dict[str, int] = field(default_factory=dict)
    """Agent id -> when it crashed (an agent group crashes at most once)."""
    recoveries: dict[str, int] = field(default_factory=dict)
    """Agent id -> when it came back."""
    _open: dict[tuple[str, str, int], int] = field(default_factory=dict, repr=False)
    """(agent id, task id, attempt) -> start time of the runs in progress."""

    def dispatched(self, at_ms: int, agent_id: str, job: Job) -> None:
        self.dispatches.append(TracedDispatch(at_ms, agent_id, job))

    def started(self, at_ms: int, agent_id: str, job: Job) -> None:
        self._open[(agent_id, job.task_id, job.attempt)] = at_ms

    def finished(self, at_ms: int, agent_id: str, job: Job, status: ResultStatus) -> None:
        """The run ended at the agent (a run the trace did not see start is ignored)."""
        started_ms = self._open.pop((agent_id, job.task_id, job.attempt), None)
        if started_ms is not None:
            self.runs.append(TracedRun(agent_id, job, started_ms, at_ms, status))

    def dead_lettered(self, at_ms: int, letter: DeadLetter) -> None:
        self.dead_letters.append(
            TracedDeadLetter(at_ms, letter.job, letter.reason, letter.error, letter.attempts)
        )

    def crashed(self, at_ms: int, agent_id: str) -> None:
        """The agent crashed: its runs in progress are lost (they never finish)."""
        self.crashes.setdefault(agent_id, at_ms)
        for key in [key for key in self._open if key[0] == agent_id]:
            del self._open[key]

    def recovered(self, at_ms: int, agent_id: str) -> None:
        self.recoveries.setdefault(agent_id, at_ms)
