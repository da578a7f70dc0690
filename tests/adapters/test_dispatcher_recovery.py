"""Restart: a new dispatcher instance (a fresh data dir: the tables come back from their
changelogs) restores the leases of agents that are still there, re-reads what was held, and
requeues what was in flight on an agent that did not come back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from faust.types import TP

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


def test_the_stores_know_the_last_changelog_offset_they_hold(
    topics: Settings, tmp_path: Path
) -> None:
    """Recovery starts after the persisted offset: it must be the last record written, or a
    restart on the same data dir would skip changes (too high) or replay them all (none)."""
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=0, epoch=1, capacity=4)

    async def scenario() -> None:
        async with (
            FakeAgent(settings, "a1", 4).beating(),
            running_dispatcher(settings) as dispatcher,
        ):
            await submit(settings, 4)
            for _, item in await assignments(settings, 0, 4):
                await answer(settings, item, TaskStatus.SUCCEEDED)
            tables = dispatcher.tables
            await until(lambda: not tables.inflight_items(), "all completed")
            for table in (tables.inflight, tables.ended):
                ends = changelog_ends(settings, table.changelog_topic_name)
                assert any(ends.values()), f"{table.name}: nothing written"

                def persisted(table: object = table, ends: dict[int, int] = ends) -> bool:
                    stored = {
                        partition: table.data.persisted_offset(  # type: ignore[attr-defined]
                            TP(table.changelog_topic_name, partition)  # type: ignore[attr-defined]
                        )
                        for partition, end in ends.items()
                        if end
                    }
                    return stored == {p: end - 1 for p, end in ends.items() if end}

                await until(persisted, f"{table.name}: persisted offsets at the end")

    asyncio.run(scenario())


def changelog_ends(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> high watermark of ``topic``."""
    consumer = Consumer({**settings.kafka_config(), "group.id": f"{topic}-ends"})
    try:
        return {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)[1]
            for partition in range(settings.shards)
        }
    finally:
        consumer.close()
