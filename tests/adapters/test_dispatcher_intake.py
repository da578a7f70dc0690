"""Tasks in, assignments out: a dispatcher in-process against the real broker, with agents
played by hand (registration, heartbeats)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from confluent_kafka import Producer

from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import DeadLetter, RegistrationStatus, Task
from tests.adapters.test_dispatcher_support import (
    FakeAgent,
    assignments,
    committed,
    dispatcher_config,
    end_offsets,
    register,
    running_dispatcher,
    submit,
    until,
    with_state,
)
from tests.adapters.test_worker_support import WAIT_S, read


def test_tasks_go_to_the_agents_partition_with_its_epoch_and_shard(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=3, epoch=7, capacity=10)

    async def scenario() -> None:
        async with running_dispatcher(settings), FakeAgent(settings, "a1", 10).beating():
            sent = await submit(settings, 6)
            got = await assignments(settings, 3, len(sent))
            assert sorted(item.task.task_id for _, item in got) == sorted(t.task_id for t in sent)

    asyncio.run(scenario())
    shards = {task.task_id: part for part, task in _read_tasks(settings, 1, 6)}
    got = [item for _, item in asyncio.run(assignments(settings, 3, 6))]
    for item in got:
        assert (item.agent_id, item.epoch, item.task.attempt) == ("a1", 7, 0)
        assert item.dispatcher_shard == shards[item.task.task_id]
    # one reply partition for all of an agent's assignments: one result record per turn
    assert len({item.reply_partition for item in got}) == 1
    assert got[0].reply_partition in range(settings.shards)


def test_garbage_and_bad_json_are_dead_lettered_and_the_rest_flows_on(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=0, epoch=1, capacity=4)
    garbage = [b"\x00\xffnot a task", b'{"type": "work", "priority": "high"}', b"{nope"]

    async def scenario() -> None:
        async with running_dispatcher(settings), FakeAgent(settings, "a1", 4).beating():
            _produce_raw(settings, settings.topics.tasks(0), garbage)
            good = await submit(settings, 1, priority=0)
            json_task = json.dumps({"type": "work", "task_id": "from-json"}).encode()
            _produce_raw(settings, settings.topics.tasks(2), [json_task])
            anonymous = json.dumps({"type": "work"}).encode()  # as kcat would send it
            _produce_raw(settings, settings.topics.tasks(3), [anonymous])
            got = await assignments(settings, 0, 3)
            ids = {item.task.task_id for _, item in got}
            # no id of its own: its coordinates, so reading the record again is a duplicate
            assert ids == {good[0].task_id, "from-json", f"{settings.topics.tasks(3)}/0/0"}

    asyncio.run(scenario())
    letters = [letter for _, letter in read(settings, settings.topics.dlq, DeadLetter, count=3)]
    assert len(letters) == 3
    assert {letter.raw for letter in letters} == set(garbage)
    for letter in letters:
        assert letter.reason is DeadLetterReason.MALFORMED and letter.task is None
        assert letter.source_topic == settings.topics.tasks(0)
        assert letter.source_partition == 0 and letter.source_offset is not None
        assert letter.error
    assert sorted(letter.source_offset or 0 for letter in letters) == [0, 1, 2]


def test_only_agents_with_an_active_registration_get_work(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")
    register(settings, "gone", partition=1, epoch=1, capacity=4, status=RegistrationStatus.RELEASED)

    async def scenario() -> None:
        async with (
            running_dispatcher(settings) as dispatcher,
            FakeAgent(settings, "stranger", 4).beating(),
            FakeAgent(settings, "gone", 4).beating(),
        ):
            sent = await submit(settings, 2)
            await asyncio.sleep(1.0)  # several heartbeats of both agents
            assert dispatcher.core.held == 2  # nobody may take them
            await asyncio.to_thread(
                register, settings, "stranger", partition=5, epoch=2, capacity=4
            )
            got = await assignments(settings, 5, 2)
        assert {item.task.task_id for _, item in got} == {task.task_id for task in sent}
        assert all(item.epoch == 2 for _, item in got)

    asyncio.run(scenario())


def test_held_tasks_stay_uncommitted_and_dispatched_ones_are_committed(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    topic = settings.topics.tasks(1)

    async def scenario() -> None:
        async with running_dispatcher(settings, dispatcher_config()) as dispatcher:
            await submit(settings, 8)
            await until(lambda: dispatcher.core.held == 8, "every task held")
            await asyncio.sleep(2.5)  # more than the commit interval (1 s)
            assert all(offset < 0 for offset in committed(settings, topic).values())
            await asyncio.to_thread(register, settings, "a1", partition=2, epoch=1, capacity=8)
            async with FakeAgent(settings, "a1", 8).beating():
                await assignments(settings, 2, 8)
                ends = {p: end for p, end in end_offsets(settings, topic).items() if end > 0}
                await until(
                    lambda: _subset(committed(settings, topic), ends) == ends,
                    "offsets committed",
                )

    asyncio.run(scenario())


def _subset(offsets: dict[int, int], keys: dict[int, int]) -> dict[int, int]:
    return {p: offsets[p] for p in keys}


def _produce_raw(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = Producer(settings.kafka_config())
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(WAIT_S) == 0


def _read_tasks(settings: Settings, priority: int, count: int) -> list[tuple[int, Task]]:
    return read(settings, settings.topics.tasks(priority), Task, count=count)
