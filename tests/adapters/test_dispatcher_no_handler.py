"""An agent that does not name its task types and has no handler for one: its NO_HANDLER
rejection sends the task to another agent at the same attempt, and no more of the type to it
(on the real broker, agents played by the test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.settings import Settings
from streams.wire import NO_HANDLER, Assignment, AssignmentBatch, TaskStatus
from tests.adapters.test_dispatcher_support import (
    FakeAgent,
    answer,
    assignments,
    register,
    running_dispatcher,
    submit,
    with_state,
)
from tests.adapters.test_worker_support import read


def test_a_no_handler_rejection_spends_no_attempt_and_that_agent_gets_no_more_of_the_type(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path)
    register(settings, "a", partition=0, epoch=1, capacity=1)
    register(settings, "b", partition=1, epoch=1, capacity=1)

    async def first_of(partitions: list[int]) -> tuple[int, Assignment]:
        """The first assignment on any of ``partitions`` (0: agent a, 1: agent b)."""
        done, pending = await asyncio.wait(
            [asyncio.ensure_future(assignments(settings, p, 1)) for p in partitions],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in pending:
            task.cancel()
        (offset_item,) = done.pop().result()
        return offset_item

    async def scenario() -> None:
        async with (
            running_dispatcher(settings),
            FakeAgent(settings, "a", 1).beating(),
            FakeAgent(settings, "b", 1).beating(),
        ):
            (task,) = await submit(settings, 1)
            _, first = await first_of([0, 1])
            assert first.task.task_id == task.task_id
            refusing = first.agent_id
            other, partition = ("b", 1) if refusing == "a" else ("a", 0)
            await answer(settings, first, TaskStatus.REJECTED, f"{NO_HANDLER}{task.type}")
            ((_, again),) = await assignments(settings, partition, 1)
            assert (again.task.task_id, again.agent_id, again.task.attempt) == (
                task.task_id,
                other,
                0,
            )
            (later,) = await submit(settings, 1)  # the refusing agent is free, the other busy
            await asyncio.sleep(1.5)
            sent_to_refusing = await asyncio.to_thread(
                read, settings, settings.topics.dispatch, AssignmentBatch, count=1,
                partitions=[1 - partition],
            )  # fmt: skip
            assert [i.task.task_id for _, b in sent_to_refusing for i in b.assignments] == [
                task.task_id
            ]
            await answer(settings, again, TaskStatus.SUCCEEDED)
            found = await assignments(settings, partition, 2)
            assert found[1][1].task.task_id == later.task_id  # it waited for the other

    asyncio.run(scenario())
