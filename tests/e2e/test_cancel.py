"""Cancelling tasks through the pipeline, as a user of ``client.cancel`` / ``taskd cancel``
does: a waiting task ends CANCELLED without running; a running ``async`` handler is cancelled;
a running plain function sees ``taskd.cancelled()`` and returns early; either run's result and
the task's outcome say CANCELLED."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import taskd
from streams.adapters.client import TaskClient
from streams.settings import Settings, child_environment
from streams.wire import CancelRequest, OutcomeStatus, Task, TaskStatus
from tests.adapters.test_dispatcher_support import until, with_state
from tests.e2e.test_pipeline_support import all_results, pipeline, read_all

HANDLERS = "tests.e2e.test_cancel"
TASKD = Path(sys.executable).parent / "taskd"
WAIT_S = 60


async def sleeps(task: Task) -> str:
    """An async handler that would run for a minute."""
    await asyncio.sleep(60)
    return "never"


def polls(task: Task) -> str:
    """A plain function that would run for a minute, polling its cancellation."""
    for _ in range(600):
        if taskd.cancelled():
            return "stopped early"
        time.sleep(0.1)
    return "never"


def test_waiting_and_running_tasks_end_cancelled(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")
    handlers = [f"{HANDLERS}:sleeps", f"{HANDLERS}:polls"]

    async def scenario() -> tuple[str, dict[str, OutcomeStatus]]:
        async with pipeline(settings, [1, 1], handlers=handlers) as (dispatcher, _, _):
            with TaskClient(settings, results=True) as client:
                running = [client.submit_new(type="work", priority=1) for _ in range(2)]
                await until(lambda: dispatcher.core.in_flight == 2, "both agents busy", WAIT_S)
                waiting = client.submit_new(type="work", priority=1)
                await until(lambda: dispatcher.core.held == 1, "the third task held", WAIT_S)
                started = time.monotonic()
                for handle in (waiting, *running):
                    await asyncio.to_thread(client.cancel, handle, reason="test")
                outcomes = await asyncio.to_thread(client.wait, [waiting, *running], WAIT_S)
                assert time.monotonic() - started < 20, "a stop must not wait for the handler"
        return waiting.task_id, {outcome.task_id: outcome.status for outcome in outcomes}

    never_ran, outcomes = asyncio.run(scenario())
    assert len(outcomes) == 3 and set(outcomes.values()) == {OutcomeStatus.CANCELLED}
    results = all_results(settings)  # one per run: the two that were running
    assert never_ran not in {r.task_id for r in results}
    assert sorted((r.agent_id, r.status) for r in results) == [
        ("a0", TaskStatus.CANCELLED),  # the async handler, cancelled
        ("a1", TaskStatus.CANCELLED),  # the plain function, which saw taskd.cancelled()
    ]


def test_taskd_cancel_sends_one_request_per_task(topics: Settings) -> None:
    done = subprocess.run(
        [str(TASKD), "cancel", "t-1", "t-2", "--reason", "not needed"],
        env=child_environment(topics),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["cancel of t-1 sent", "cancel of t-2 sent"]
    requests = read_all(topics, topics.topics.cancels, CancelRequest)
    assert sorted(r.task_id for r in requests) == sorted(["t-1", "t-2"] * topics.shards)
    assert {r.reason for r in requests} == {"not needed"}
