"""Two dispatcher instances with one topic prefix, on the real broker: the consumer group splits
the shards between them, each fills only its share of an agent's slots, and every task is
dispatched once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.adapters.dispatcher import Dispatcher
from streams.settings import Settings
from streams.wire import Assignment, AssignmentBatch, TaskStatus
from tests.adapters.test_dispatcher_support import (
    CODEC,
    FakeAgent,
    answer,
    dispatcher_config,
    register,
    running_dispatcher,
    submit,
    until,
    with_state,
)
from tests.adapters.test_worker_support import WAIT_S

CAPACITY = 4
"""Under 7 slots: no prefetch, so the agent's slots are its capacity."""
TASKS = 20
ROUND_S = 1.5
"""How long the played agent holds what it was sent before answering: long enough for an
instance that over-commits to have sent more."""


def _split(first: Dispatcher, second: Dispatcher, shards: int) -> bool:
    owned = [first.owned_shards, second.owned_shards]
    return all(owned) and sorted(owned[0] + owned[1]) == list(range(shards))


def _group_done(dispatcher: Dispatcher, tasks: int) -> bool:
    """Every instance's report says so: ``tasks`` completed in all, nothing held or in flight."""
    group = dispatcher.status_view()["group"]
    assert isinstance(group, dict)
    totals = group["totals"]
    return bool(totals["completed"] == tasks and totals["held"] == totals["in_flight"] == 0)


def _dispatch_reader(settings: Settings) -> Consumer:
    consumer = Consumer({**settings.kafka_config(), "group.id": f"test-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(settings.topics.dispatch, 0, OFFSET_BEGINNING)])
    return consumer


def _read_for(consumer: Consumer, seconds: float) -> list[Assignment]:
    found: list[Assignment] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in consumer.consume(100, timeout=0.1):
            assert message.error() is None, message.error()
            found += CODEC.decode(message.value() or b"", AssignmentBatch).assignments
    return found


async def _play_agent(settings: Settings, total: int) -> tuple[list[int], Counter[str], set[int]]:
    """Hold each round of assignments for ``ROUND_S``, then answer them all: how many were
    outstanding at once in each round, how often each task was sent, and which shards sent."""
    consumer = _dispatch_reader(settings)
    outstanding: list[int] = []
    sent: Counter[str] = Counter()
    shards: set[int] = set()
    deadline = time.monotonic() + 4 * WAIT_S
    try:
        while sum(sent.values()) < total:
            assert time.monotonic() < deadline, f"{sum(sent.values())} of {total} dispatched"
            got = await asyncio.to_thread(_read_for, consumer, ROUND_S)
            if not got:
                continue
            outstanding.append(len(got))
            for item in got:
                sent[item.task.task_id] += 1
                shards.add(item.dispatcher_shard)
                await answer(settings, item, TaskStatus.SUCCEEDED)
    finally:
        consumer.close()
    return outstanding, sent, shards


def test_two_instances_split_the_shards_and_never_overcommit_an_agent(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path)
    register(settings, "a1", partition=0, epoch=1, capacity=CAPACITY)

    async def scenario() -> None:
        async with (
            FakeAgent(settings, "a1", CAPACITY).beating(),
            running_dispatcher(settings) as first,
            running_dispatcher(settings) as second,
        ):
            await until(lambda: _split(first, second, settings.shards), "the shards split")
            tasks = await submit(settings, TASKS)
            outstanding, sent, shards = await _play_agent(settings, TASKS)
            assert max(outstanding) <= CAPACITY, f"the agent was sent {outstanding} at once"
            assert sorted(sent) == sorted(task.task_id for task in tasks)
            assert set(sent.values()) == {1}, "a task was dispatched twice"
            assert shards == set(range(settings.shards)), "both instances dispatched"
            await until(lambda: _group_done(first, TASKS), "the group sums in /status")
            view = second.status_view()["group"]
            assert isinstance(view, dict)
            names = [entry["instance"] for entry in view["instances"]]
            assert names == sorted([first.instance, second.instance])
            assert view["totals"]["shards"] == list(range(settings.shards))

    asyncio.run(scenario())


def test_an_instance_restarted_under_its_id_gets_its_shards_back_and_the_other_goes_on(
    topics: Settings, tmp_path: Path
) -> None:
    """Static membership (``instance_id``): a stop and a start under the same id within the
    session give the shards back with no rebalance: the other instance hands nothing over."""
    settings = with_state(topics, tmp_path)
    handed_over: list[list[int]] = []

    async def scenario() -> None:
        async with running_dispatcher(settings, dispatcher_config(instance_id="i1")) as first:
            second = Dispatcher(settings, dispatcher_config(instance_id="i2"))
            await second.start()
            await until(lambda: _split(first, second, settings.shards), "the shards split")
            kept, lent = first.owned_shards, second.owned_shards
            assert first.engine is not None
            hand_over = first.engine.hand_over

            async def counted(shards: Iterable[int], *, lost: bool) -> list[TopicPartition]:
                handed_over.append(sorted(shards))
                return await hand_over(shards, lost=lost)

            first.engine.hand_over = counted  # type: ignore[method-assign]
            await second.stop()
            again = Dispatcher(settings, dispatcher_config(instance_id="i2"))
            await again.start()
            try:
                assert again.owned_shards == lent
                assert first.owned_shards == kept
                assert handed_over == []
            finally:
                await again.stop()

    asyncio.run(scenario())
