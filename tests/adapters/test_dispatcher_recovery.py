"""Restart: a new dispatcher instance (a fresh data dir: the tables come back from their
changelogs) restores the leases of agents that are still there, re-reads what was held, and
requeues what was in flight on an agent that did not come back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.settings import Settings
from streams.wire import TaskStatus
from tests.adapters.test_dispatcher_support import (
    FakeAgent,
    answer,
    assignments,
    register,
    running_dispatcher,
    submit,
    until,
    with_state,
)


def test_leases_are_restored_and_held_tasks_read_again(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "first")
    register(settings, "a1", partition=0, epoch=1, capacity=2)

    async def scenario() -> None:
        async with FakeAgent(settings, "a1", 2).beating():
            async with running_dispatcher(settings):
                sent = await submit(settings, 4)
                first = await assignments(settings, 0, 2)  # two held: the agent is full
            restarted = with_state(settings, tmp_path / "second")
            async with running_dispatcher(restarted) as dispatcher:
                loop = dispatcher.loop
                assert loop is not None
                await until(lambda: not loop.recovering, "recovered")
                assert len(loop.core.in_flight) == 2
                await until(lambda: loop.core.held == 2, "the held tasks read again")
                for _, item in first:
                    await answer(settings, item, TaskStatus.SUCCEEDED)
                rest = (await assignments(settings, 0, 4))[2:]
                for _, item in rest:
                    await answer(settings, item, TaskStatus.SUCCEEDED)
                await until(lambda: not dispatcher.tables.inflight_items(), "all completed")
                everything = await assignments(settings, 0, 4)
        assert sorted(item.task.task_id for _, item in everything) == sorted(
            task.task_id for task in sent
        )
        assert all(item.task.attempt == 0 for _, item in everything)

    asyncio.run(scenario())


def test_tasks_of_an_agent_that_did_not_come_back_are_requeued(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "first")
    register(settings, "a1", partition=0, epoch=1, capacity=2)
    register(settings, "a2", partition=1, epoch=1, capacity=2)

    async def scenario() -> None:
        async with FakeAgent(settings, "a1", 2).beating(), running_dispatcher(settings):
            sent = await submit(settings, 2)
            await assignments(settings, 0, 2)
        restarted = with_state(settings, tmp_path / "second")
        async with FakeAgent(settings, "a2", 2).beating(), running_dispatcher(restarted):
            moved = await assignments(settings, 1, 2)
        assert {item.task.task_id for _, item in moved} == {task.task_id for task in sent}
        assert all(item.task.attempt == 1 for _, item in moved)

    asyncio.run(scenario())
