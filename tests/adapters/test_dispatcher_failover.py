"""Failover: a silent agent, a lease that runs out, an agent that claims its partition anew;
the core decides, the dispatcher carries out the requeue and the new dispatch."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import DeadLetter
from tests.adapters.test_dispatcher_support import (
    FakeAgent,
    assignments,
    dispatcher_config,
    register,
    running_dispatcher,
    submit,
    with_state,
)
from tests.adapters.test_worker_support import read


def test_the_tasks_of_a_silent_agent_go_to_another(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=0, epoch=1, capacity=3)
    register(settings, "a2", partition=1, epoch=1, capacity=3)

    async def scenario() -> None:
        async with running_dispatcher(settings):
            async with FakeAgent(settings, "a1", 3).beating():
                sent = await submit(settings, 3)
                first = await assignments(settings, 0, 3)
            async with FakeAgent(settings, "a2", 3).beating():  # a1 is silent from here
                moved = await assignments(settings, 1, 3)
        ids = {task.task_id for task in sent}
        assert {item.task.task_id for _, item in first} == ids
        assert {item.task.task_id for _, item in moved} == ids
        assert all((item.agent_id, item.task.attempt) == ("a2", 1) for _, item in moved)

    asyncio.run(scenario())


def test_a_lease_that_runs_out_is_taken_back_until_the_attempts_are_spent(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=0, epoch=1, capacity=2)

    async def scenario() -> None:
        config = dispatcher_config(lease_ms=700)
        async with running_dispatcher(settings, config), FakeAgent(settings, "a1", 2).beating():
            [task] = await submit(settings, 1, max_attempts=3)
            tries = await assignments(settings, 0, 3)
            assert [(item.task.task_id, item.task.attempt) for _, item in tries] == [
                (task.task_id, attempt) for attempt in range(3)
            ]
            letters = await asyncio.to_thread(
                read, settings, settings.topics.dlq, DeadLetter, count=1
            )
        [(_, letter)] = letters
        assert (letter.reason, letter.attempts) == (DeadLetterReason.MAX_ATTEMPTS, 3)
        assert letter.error == "lease expired"

    asyncio.run(scenario())


def test_an_agent_that_claims_anew_gets_its_tasks_again_under_the_new_epoch(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=4, epoch=1, capacity=2)

    async def scenario() -> None:
        async with running_dispatcher(settings), FakeAgent(settings, "a1", 2).beating():
            sent = await submit(settings, 2)
            await assignments(settings, 4, 2)
            await asyncio.to_thread(register, settings, "a1", partition=4, epoch=2, capacity=2)
            again = (await assignments(settings, 4, 4))[2:]
        assert {item.task.task_id for _, item in again} == {task.task_id for task in sent}
        assert all((item.epoch, item.task.attempt) == (2, 1) for _, item in again)

    asyncio.run(scenario())
