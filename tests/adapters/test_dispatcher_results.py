"""Results: matched to their leases; completed, retried through the tiers, dead-lettered or
re-queued, with the durable state (what a restart recovers) kept; agents played by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.adapters.admin import create_topics
from streams.adapters.dispatcher import Dispatcher
from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import DeadLetter, Task, TaskStatus
from tests.adapters.test_dispatcher_support import (
    FakeAgent,
    answer,
    assignments,
    dispatcher_config,
    durable,
    in_flight_durably,
    inputs_committed,
    register,
    running_dispatcher,
    submit,
    until,
    until_read,
    with_state,
)
from tests.adapters.test_worker_support import read

TIERS_MS = (300, 600)


def _settings(topics: Settings, tmp_path: Path) -> Settings:
    settings = with_state(topics, tmp_path / "state").model_copy(
        update={"retry_tiers_ms": TIERS_MS}
    )
    create_topics(settings)  # the retry tiers of these backoffs
    return settings


def _inflight(dispatcher: Dispatcher) -> dict[str, int]:
    return in_flight_durably(dispatcher.settings)


def _ended(dispatcher: Dispatcher) -> set[str]:
    return durable(dispatcher.settings)[1]


def test_each_status_is_settled_as_the_design_says(topics: Settings, tmp_path: Path) -> None:
    settings = _settings(topics, tmp_path)
    register(settings, "a1", partition=0, epoch=1, capacity=10)
    outcomes = {
        "ok": (TaskStatus.SUCCEEDED, None),
        "fail": (TaskStatus.FAILED, "cannot work"),
        "retry": (TaskStatus.RETRYABLE, "busy"),
        "reject": (TaskStatus.REJECTED, "agent draining"),
    }

    async def scenario() -> None:
        async with (
            running_dispatcher(settings) as dispatcher,
            FakeAgent(settings, "a1", 10).beating(),
        ):
            tasks = dict(zip(outcomes, await submit(settings, len(outcomes)), strict=True))
            spent = (await submit(settings, 1, max_attempts=1))[0]
            first = {item.task.task_id: item for _, item in await assignments(settings, 0, 5)}
            expected = {task_id: 0 for task_id in first}
            await until_read(
                lambda: _inflight(dispatcher) == expected, "the first attempts durable"
            )
            names = {task.task_id: name for name, task in tasks.items()}
            for task_id, item in first.items():
                status, error = outcomes.get(names.get(task_id, ""), (TaskStatus.RETRYABLE, "x"))
                await answer(settings, item, status, error)
            again = await assignments(settings, 0, 7)
            second = {item.task.task_id: item for _, item in again[5:]}
            assert {names[task_id] for task_id in second} == {"retry", "reject"}
            assert all(item.task.attempt == 1 for item in second.values())
            await until_read(lambda: len(_inflight(dispatcher)) == 2, "only the second attempts")
            assert _inflight(dispatcher) == {task_id: 1 for task_id in second}
            ended = {tasks["ok"].task_id, tasks["fail"].task_id, spent.task_id}
            await until_read(lambda: _ended(dispatcher) == ended, "the ended tasks remembered")
            for item in second.values():
                await answer(settings, item, TaskStatus.SUCCEEDED)
            await until_read(lambda: not _inflight(dispatcher), "nothing in flight")
            assert len(_ended(dispatcher)) == 5

        retried = read(settings, settings.topics.retry(0), Task, count=1)
        assert [(task.task_id, task.attempt) for _, task in retried] == [
            (tasks["retry"].task_id, 1)
        ]
        shard = first[tasks["retry"].task_id].dispatcher_shard
        assert retried[0][0] == shard
        letters = {
            letter.task.task_id: letter
            for _, letter in read(settings, settings.topics.dlq, DeadLetter, count=2)
            if letter.task is not None
        }
        assert letters[tasks["fail"].task_id].reason is DeadLetterReason.FAILED
        assert letters[tasks["fail"].task_id].error == "cannot work"
        assert letters[spent.task_id].reason is DeadLetterReason.MAX_ATTEMPTS
        assert letters[spent.task_id].attempts == 1

    asyncio.run(scenario())


def test_retries_climb_the_tiers_then_end_with_max_attempts(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path)
    register(settings, "a1", partition=0, epoch=1, capacity=2)

    async def scenario() -> None:
        async with running_dispatcher(settings), FakeAgent(settings, "a1", 2).beating():
            task = (await submit(settings, 1, max_attempts=3))[0]
            for attempt in range(3):
                _, item = (await assignments(settings, 0, attempt + 1))[attempt]
                assert (item.task.task_id, item.task.attempt) == (task.task_id, attempt)
                await answer(settings, item, TaskStatus.RETRYABLE, f"busy {attempt}")
            letters = await asyncio.to_thread(
                read, settings, settings.topics.dlq, DeadLetter, count=1
            )

        assert [(le.reason, le.attempts, le.error) for _, le in letters] == [
            (DeadLetterReason.MAX_ATTEMPTS, 3, "busy 2")
        ]
        tier0 = read(settings, settings.topics.retry(0), Task, count=1)
        tier1 = read(settings, settings.topics.retry(1), Task, count=1)
        assert [t.attempt for _, t in tier0] == [1] and [t.attempt for _, t in tier1] == [2]

    asyncio.run(scenario())


def test_a_stale_or_repeated_result_changes_nothing(topics: Settings, tmp_path: Path) -> None:
    settings = _settings(topics, tmp_path)
    register(settings, "a1", partition=0, epoch=1, capacity=2)

    async def scenario() -> None:
        async with (
            running_dispatcher(settings) as dispatcher,
            FakeAgent(settings, "a1", 2).beating(),
        ):
            await submit(settings, 1)
            [(_, item)] = await assignments(settings, 0, 1)
            await answer(settings, item, TaskStatus.SUCCEEDED)
            await answer(settings, item, TaskStatus.FAILED, "late duplicate")
            task_id = item.task.task_id
            await until_read(lambda: task_id in _ended(dispatcher), "completed, durably")
            await until_read(lambda: inputs_committed(settings), "every input committed")
            assert not _inflight(dispatcher) and dispatcher.core.held == 0

    asyncio.run(scenario())
    assert read(settings, settings.topics.dlq, DeadLetter, count=0) == []


@pytest.mark.parametrize(
    ("announced", "in_flight"),
    [
        (None, 10),  # 8 slots + int(8 * 0.25): an agent that does not say (an older one)
        (8, 10),  # it reads ahead more than the share: the share
        (1, 9),  # it reads ahead 1 only: the rest would wait in Kafka, stops behind them
    ],
)
def test_an_agent_gets_its_slots_plus_the_prefetch_share_and_no_more(
    topics: Settings, tmp_path: Path, announced: int | None, in_flight: int
) -> None:
    settings = with_state(topics, tmp_path)
    register(settings, "a1", partition=0, epoch=1, capacity=8)

    async def scenario() -> None:
        async with (
            FakeAgent(settings, "a1", 8, prefetch=announced).beating(),
            running_dispatcher(settings, dispatcher_config(prefetch_share=0.25)) as dispatcher,
        ):
            await submit(settings, 14)
            await until(lambda: dispatcher.core.held == 14 - in_flight, "the rest held")
            assert dispatcher.core.in_flight == in_flight
            sent = await assignments(settings, 0, in_flight)
            assert len({item.task.task_id for _, item in sent}) == in_flight

    asyncio.run(scenario())
