"""A handler that runs past its lease, as an operator meets it: the dispatcher gives its task to
another run when the lease runs out, so the agent tells the late run to stop (an ``async``
handler is cancelled at once, its result RETRYABLE); a plain function that ignores the stop
keeps its slot, and the agent announces one slot fewer until it returns, so no task is sent to
wait behind it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from streams.adapters.client import TaskClient
from streams.settings import Settings
from streams.wire import OutcomeStatus, Task, TaskStatus
from tests.adapters.test_dispatcher_support import until, with_state
from tests.e2e.test_pipeline_support import all_results, pipeline, pipeline_config

HANDLERS = "tests.e2e.test_lease_overrun"
LEASE_MS = 2_000
HANG_S = 6.0
"""How long the plain function hangs, ignoring its stop: three leases."""
WAIT_S = 60
HANG = b"hang"


def hangs_once(task: Task) -> str:
    """Hangs on the first attempt of a task whose payload says so, ignoring every stop."""
    if task.payload == HANG and task.attempt == 0:
        time.sleep(HANG_S)
        return "too late"
    return "done"


async def sleeps_once(task: Task) -> str:
    """Would sleep a minute on the first attempt of a task whose payload says so."""
    if task.payload == HANG and task.attempt == 0:
        await asyncio.sleep(60)
        return "too late"
    return "done"


def _past_lease(settings: Settings, task_id: str) -> list[tuple[str, int, TaskStatus, str]]:
    return [
        (r.agent_id, r.attempt, r.status, r.error or "")
        for r in all_results(settings)
        if r.task_id == task_id and r.attempt == 0
    ]


def test_a_hung_plain_function_is_told_to_stop_and_its_slot_is_not_counted(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    config = pipeline_config(lease_ms=LEASE_MS)
    handlers = [f"{HANDLERS}:hangs_once"] * 2

    async def scenario() -> tuple[str, str, list[str], OutcomeStatus, int]:
        async with pipeline(settings, [1, 1], config, handlers=handlers) as (dispatcher, _, _):
            core = dispatcher.core
            with TaskClient(settings, results=True) as client:
                hung = client.submit_new(type="work", priority=1, payload=HANG)
                await until(lambda: core.lease_of(hung.task_id) is not None, "sent", WAIT_S)
                lease = core.lease_of(hung.task_id)
                assert lease is not None
                stuck = lease.agent_id

                def slots(agent_id: str) -> int:
                    return next(a.capacity for a in core.agents() if a.agent_id == agent_id)

                await until(lambda: slots(stuck) == 0, "its slot announced taken", WAIT_S)
                quick = [client.submit_new(type="work", priority=1) for _ in range(20)]
                outcomes = await asyncio.to_thread(client.wait, [hung, *quick], WAIT_S)
                ran_on = sorted({o.agent_id or "" for o in outcomes[1:]})
                await until(lambda: slots(stuck) == 1, "its slot back once it returned", WAIT_S)
                return stuck, hung.task_id, ran_on, outcomes[0].status, outcomes[0].attempts

    stuck, hung_id, ran_on, status, attempts = asyncio.run(scenario())
    other = "a1" if stuck == "a0" else "a0"
    assert ran_on == [other], "no task was sent to wait behind the hung handler"
    # its second attempt ran elsewhere; or, sent back to the hung agent before its heartbeat
    # said the slot was taken, it was not started there past its own lease, and the third ran
    assert status is OutcomeStatus.SUCCEEDED and attempts in (2, 3)
    # it ignored the stop and ran to its end: its own result, which the dispatcher, having
    # given the task to another run, dropped
    [(agent, _, late_status, _)] = _past_lease(settings, hung_id)
    assert (agent, late_status) == (stuck, TaskStatus.SUCCEEDED)


def test_an_async_handler_past_its_lease_is_cancelled_and_frees_its_slot(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    config = pipeline_config(lease_ms=LEASE_MS)

    async def scenario() -> tuple[str, float, OutcomeStatus]:
        async with pipeline(settings, [1], config, handlers=[f"{HANDLERS}:sleeps_once"]):
            with TaskClient(settings, results=True) as client:
                started = time.monotonic()
                hung = client.submit_new(type="work", priority=1, payload=HANG)
                outcome = await asyncio.to_thread(hung.outcome, WAIT_S)
                return hung.task_id, time.monotonic() - started, outcome.status

    hung_id, took_s, status = asyncio.run(scenario())
    assert status is OutcomeStatus.SUCCEEDED  # its second attempt, on the same agent's slot
    assert took_s < 30, "the late run was cancelled, not waited for"
    [(agent, _, late_status, error)] = _past_lease(settings, hung_id)
    assert (agent, late_status) == ("a0", TaskStatus.RETRYABLE)
    assert "ran past its lease" in error
