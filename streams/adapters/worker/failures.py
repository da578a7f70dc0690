"""A handler's failed attempts in the agent's log: each with its traceback, rate-limited.

The first ``FAILURE_BURST`` failures of each task type and exception type per minute are logged
in full (WARNING when the task may be retried, ERROR for a :class:`FatalError` or an output
that cannot be encoded); the rest are counted, and one summary line a minute says how many were
not logged (``streams.adapters.logs.RateLimitedLog``).
"""

from __future__ import annotations

import logging

from streams.adapters.logs import RateLimitedLog
from streams.adapters.worker.results import Outcome
from streams.wire import Task, TaskStatus

log = logging.getLogger(__name__)

FAILURE_BURST = 5
"""Failures logged in full per task type and exception type per interval."""
FAILURE_INTERVAL_S = 60.0


class FailureLog:
    """The agent's ``on_failure`` (``results.run_handler``): logs a failed attempt."""

    def __init__(
        self,
        agent_id: str,
        *,
        burst: int = FAILURE_BURST,
        interval_s: float = FAILURE_INTERVAL_S,
    ) -> None:
        self.agent_id = agent_id
        self.limited = RateLimitedLog(log, "handler failures", burst=burst, interval_s=interval_s)

    def __call__(self, task: Task, outcome: Outcome, error: BaseException | None) -> None:
        fatal = outcome.status is TaskStatus.FAILED
        attempt = task.attempt + 1
        if fatal:
            then = "fatal: the task goes to the dead letters"
        elif attempt >= task.max_attempts:
            then = "retryable, but it was the last attempt: the task goes to the dead letters"
        else:
            then = "retryable: the task will be retried"
        kind = type(error).__name__ if error is not None else "unencodable output"
        self.limited.log(
            logging.ERROR if fatal else logging.WARNING,
            f"of type {task.type} ({kind})",
            "agent %s: task %s (type %s) failed on attempt %d of %d, %s: %s",
            self.agent_id,
            task.task_id,
            task.type,
            attempt,
            task.max_attempts,
            then,
            outcome.error,
            exc_info=error,
            extra={
                "agent_id": self.agent_id,
                "task_id": task.task_id,
                "task_type": task.type,
                "attempt": attempt,
                "max_attempts": task.max_attempts,
                "status": outcome.status.value,
            },
        )

    def flush(self, *, force: bool = False) -> None:
        """Write the summaries due (``force``: every one, when the agent stops)."""
        self.limited.flush(force=force)
