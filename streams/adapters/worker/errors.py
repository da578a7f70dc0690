"""The errors of the worker runtime: what a handler raises, and why an agent cannot run.

All derive from :class:`~streams.errors.TaskdError`, the package's one root.
"""

from __future__ import annotations

from streams.errors import TaskdError


class HandlerError(TaskdError):
    """Raised by a task handler to say how its attempt ended; the message becomes the error."""


class RetryableError(HandlerError):
    """A transient failure: the result is RETRYABLE and the task is retried while attempts remain.

    Any unexpected exception from a handler is treated the same way.
    """


class FatalError(HandlerError):
    """A final failure: the result is FAILED and the task goes to the dead letters."""


class AgentError(TaskdError):
    """The agent cannot take or keep a dispatch partition (all taken, races lost, fenced)."""
