"""A running task's cancellation, as its handler sees it.

When a task is cancelled while it runs (``taskd cancel``), the dispatcher tells its agent to
stop it. An ``async`` handler is cancelled (``asyncio.CancelledError`` at its next ``await``);
a plain function runs in a thread, which cannot be interrupted, so it polls
:func:`cancelled` (``taskd.cancelled()``) and returns early. Either way the run's result is
CANCELLED, whatever the handler returns after the stop.
"""

from __future__ import annotations

import contextvars
import threading

_TOKEN: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "taskd_cancel_token", default=None
)


def cancelled() -> bool:
    """Whether the task this handler runs has been cancelled (False outside a handler)."""
    token = _TOKEN.get()
    return token is not None and token.is_set()


def watch(token: threading.Event) -> contextvars.Token[threading.Event | None]:
    """Make ``token`` what :func:`cancelled` reads in this context (and the handler's)."""
    return _TOKEN.set(token)


def unwatch(reset: contextvars.Token[threading.Event | None]) -> None:
    _TOKEN.reset(reset)
