"""How an attempt ended: a handler's return value or exception turned into a TaskResult.

Outputs: bytes as they are, text as UTF-8, None as no output, anything else as JSON.
Errors: :class:`FatalError` is FAILED, :class:`RetryableError` and every unexpected exception
RETRYABLE (a bug or an outage may pass; the attempts bound the retries).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.adapters.worker.errors import FatalError, HandlerError
from streams.adapters.worker.handlers import Invoker
from streams.wire import Assignment, Task, TaskResult, TaskStatus
from streams.wire.limits import EXCERPT_BYTES, shorten


@dataclass(frozen=True, slots=True)
class Outcome:
    """The status of one attempt with its output or its error text."""

    status: TaskStatus
    output: bytes | None = None
    error: str | None = None

    def result(
        self, assignment: Assignment, *, agent_id: str, started_at: int, finished_at: int
    ) -> TaskResult:
        """The TaskResult of ``assignment``'s attempt (times in ms since the epoch)."""
        return TaskResult(
            task_id=assignment.task.task_id,
            agent_id=agent_id,
            attempt=assignment.task.attempt,
            status=self.status,
            error=self.error,
            started_at=started_at,
            finished_at=finished_at,
            output=self.output,
            shard=assignment.dispatcher_shard,
        )


def bounded(outcome: Outcome, max_output_bytes: int) -> Outcome:
    """``outcome`` with its error text shortened, or FAILED if its output is over the limit
    (a result must fit a record; the task goes to the dead letters saying why)."""
    output = outcome.output
    if output is not None and len(output) > max_output_bytes:
        return Outcome(
            TaskStatus.FAILED,
            error=f"the handler's output is {len(output):,} bytes, over the limit of "
            f"{max_output_bytes:,} (max_output_bytes)",
        )
    if outcome.error is not None and len(outcome.error) > EXCERPT_BYTES:
        return Outcome(outcome.status, output=output, error=shorten(outcome.error))
    return outcome


def rejected(reason: str) -> Outcome:
    """A task the agent will not run (no handler for its type, or the agent is draining)."""
    return Outcome(TaskStatus.REJECTED, error=reason)


OnFailure = Callable[[Task, Outcome, BaseException | None], None]
"""Told of each failed attempt: the task, its outcome, the exception (None when the handler's
output could not be encoded or is over the limit)."""


async def run_handler(
    invoke: Invoker, task: Task, max_output_bytes: int, on_failure: OnFailure | None = None
) -> Outcome:
    """Run ``task`` through ``invoke``; every exception becomes an outcome, none escapes, and
    the outcome fits a record (``bounded``). ``on_failure`` is told of a failed attempt (the
    agent logs it)."""
    try:
        value = await invoke(task)
    except Exception as error:  # the contract: a handler's failure is a result, not a crash
        outcome = bounded(failure(error), max_output_bytes)
        if on_failure is not None:
            on_failure(task, outcome, error)
        return outcome
    outcome = bounded(success(value), max_output_bytes)
    if on_failure is not None and outcome.status is TaskStatus.FAILED:
        on_failure(task, outcome, None)
    return outcome


def success(value: Any) -> Outcome:
    """SUCCEEDED with ``value`` as output; FAILED if it cannot be turned into bytes."""
    try:
        return Outcome(TaskStatus.SUCCEEDED, output=encode_output(value))
    except (TypeError, ValueError) as error:
        return Outcome(TaskStatus.FAILED, error=f"the handler's output is not JSON: {error}")


def failure(error: BaseException) -> Outcome:
    """FAILED for a FatalError, RETRYABLE for anything else, with the error's text."""
    status = TaskStatus.FAILED if isinstance(error, FatalError) else TaskStatus.RETRYABLE
    return Outcome(status, error=describe(error))


def describe(error: BaseException) -> str:
    """Our own errors by their message; others with their type, e.g. ``KeyError: 'x'``."""
    if isinstance(error, HandlerError):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


def encode_output(value: Any) -> bytes | None:
    """The bytes of a handler's return value; TypeError or ValueError if it is not JSON."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
