"""The clean stop (SIGTERM, SIGINT or ``Agent.stop``), in the order the dispatcher relies on.

1. heartbeat DRAINING: the dispatcher sends nothing more;
2. (reading has stopped) assignments fetched but not started are REJECTED "agent draining",
   so the dispatcher re-queues them at once rather than after their lease;
3. the running tasks finish and their results are written (waiting batches go at once);
4. the offsets are committed;
5. heartbeat STOPPING, then the registration RELEASED.

A step the broker refuses is logged and the next ones still run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from streams.adapters.worker.dispatch import DispatchReader
from streams.adapters.worker.handlers import Invokers
from streams.adapters.worker.heartbeats import Heartbeats
from streams.adapters.worker.registration import Registrar
from streams.adapters.worker.runner import TaskRunner
from streams.errors import KafkaError
from streams.wire import AgentStatus

log = logging.getLogger(__name__)

DRAINING_REASON = "agent draining"


async def finish_work(
    *, runner: TaskRunner, invokers: Invokers, reader: DispatchReader, heartbeats: Heartbeats
) -> None:
    """Steps 1 to 4; the registration is still renewed meanwhile (tasks may run long)."""
    await _step("heartbeat DRAINING", lambda: heartbeats.announce(AgentStatus.DRAINING))
    runner.reject_waiting(DRAINING_REASON)
    invokers.flush()
    await runner.wait_idle()
    await _step("commit", lambda: reader.commit(runner.offsets.committable(), wait=True))


async def sign_off(*, heartbeats: Heartbeats, registrar: Registrar) -> None:
    """Step 5, once the periodic heartbeats and renewals have stopped."""
    await _step("heartbeat STOPPING", lambda: heartbeats.announce(AgentStatus.STOPPING))
    await _step("registration RELEASED", registrar.release)


async def _step(name: str, step: Callable[[], Awaitable[None]]) -> None:
    try:
        await step()
    except KafkaError as error:
        log.error("draining: %s failed: %s", name, error)
