"""A running task's cancellation, as its handler sees it.

When a task is cancelled while it runs (``taskd cancel``), the dispatcher tells its agent to
stop it. An ``async`` handler is cancelled (``asyncio.CancelledError`` at its next ``await``);
a plain function runs in a thread, which cannot be interrupted, so it polls
:func:`cancelled` (``taskd.cancelled()``) and returns early. Either way the run's result is
CANCELLED, whatever the handler returns after the stop.
"""

from __future__ import annotations

import contextvars


class StopToken:
    """One run's stop flag: set on the agent's loop, read by the handler (a thread, maybe).
    A plain attribute: one object per run, and a bool needs no lock to be read across threads.
    ``preempted``: stopped to free the slot for a more urgent task, not cancelled; the handler
    sees the same signal (the task will run again), only the result says which. ``past_lease``:
    stopped because its lease ran out. ``noticed``: the handler saw the stop (``cancelled()``
    answered True), so what it returned after that may be a run cut short."""

    __slots__ = ("noticed", "past_lease", "preempted", "stopped")

    def __init__(self) -> None:
        self.stopped = False
        self.preempted = False
        self.past_lease = False
        self.noticed = False


_TOKEN: contextvars.ContextVar[StopToken | None] = contextvars.ContextVar(
    "taskd_cancel_token", default=None
)


def cancelled() -> bool:
    """Whether the task this handler runs has been cancelled (False outside a handler)."""
    token = _TOKEN.get()
    if token is None or not token.stopped:
        return False
    token.noticed = True
    return True


def watch(token: StopToken) -> contextvars.Token[StopToken | None]:
    """Make ``token`` what :func:`cancelled` reads in this context (and the handler's)."""
    return _TOKEN.set(token)


def unwatch(reset: contextvars.Token[StopToken | None]) -> None:
    _TOKEN.reset(reset)
