"""Restart: a new dispatcher instance (a fresh data dir: the state comes back from its
changelog) restores the leases of agents that are still there, re-reads what was held, and
requeues what was in flight on an agent that did not come back. The changelog holds only what
is open at a checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.settings import Settings
from streams.wire import EndedTasks, Task, TaskState, TaskStatus, task_to_job
from tests.adapters.test_dispatcher_support import (
    CODEC,
    FakeAgent,
    answer,
    assignments,
    dispatcher_config,
    durable,
    in_flight_durably,
    register,
    running_dispatcher,
    submit,
    until,
    until_read,
    with_state,
)
from tests.e2e.test_pipeline_support import all_assignments


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
                await until(lambda: dispatcher.core.in_flight == 2, "the leases restored")
                await until(lambda: dispatcher.core.held == 2, "the held tasks read again")
                for _, item in first:
                    await answer(settings, item, TaskStatus.SUCCEEDED)
                rest = (await assignments(settings, 0, 4))[2:]
                for _, item in rest:
                    await answer(settings, item, TaskStatus.SUCCEEDED)
                await until_read(lambda: not in_flight_durably(settings), "all completed")
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


def test_a_task_whose_run_ended_while_no_dispatcher_ran_is_not_run_again(
    topics: Settings, tmp_path: Path
) -> None:
    """The agent finished one of its two tasks, then restarted, while no dispatcher ran: the
    restarted dispatcher reads the result back with the leases, so it ends that task and sends
    only the other, whose run the restart lost, to the agent's new incarnation."""
    settings = with_state(topics, tmp_path / "first")
    register(settings, "a1", partition=0, epoch=1, capacity=2)

    async def scenario() -> None:
        async with FakeAgent(settings, "a1", 2).beating():
            async with running_dispatcher(settings):
                await submit(settings, 2)
                [(_, done), (_, lost)] = await assignments(settings, 0, 2)
            await answer(settings, done, TaskStatus.SUCCEEDED)
            register(settings, "a1", partition=0, epoch=2, capacity=2)
            restarted = with_state(settings, tmp_path / "second")
            async with running_dispatcher(restarted) as dispatcher:
                [_, _, (_, again)] = await assignments(settings, 0, 3)
                assert (again.task.task_id, again.task.attempt) == (lost.task.task_id, 1)
                await answer(settings, again, TaskStatus.SUCCEEDED)
                await until(lambda: dispatcher.core.phase_of(again.task.task_id) is None, "done")
                assert dispatcher.core.phase_of(done.task.task_id) is None
        sent = [(item.task.task_id, item.task.attempt) for item in all_assignments(settings)]
        assert sorted(sent) == sorted(
            [(done.task.task_id, 0), (lost.task.task_id, 0), (lost.task.task_id, 1)]
        )

    asyncio.run(scenario())


def test_the_changelog_holds_only_what_is_open_at_a_checkpoint(
    topics: Settings, tmp_path: Path
) -> None:
    """A task dispatched and ended between two checkpoints writes no state record; one open at
    a checkpoint is written once, and deleted once when it ends."""
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=0, epoch=1, capacity=4)
    slow = dispatcher_config(commit_interval_ms=60_000)  # no checkpoint but the last one

    async def scenario() -> None:
        async with FakeAgent(settings, "a1", 4).beating():
            async with running_dispatcher(settings, slow) as dispatcher:
                quick = [task_to_job(task) for task in await submit(settings, 2)]
                for _, item in await assignments(settings, 0, 2):
                    await answer(settings, item, TaskStatus.SUCCEEDED)
                core = dispatcher.core
                await until(lambda: all(core.is_duplicate(job) for job in quick), "both ended")
                # stopping takes the one checkpoint: only the dedupe keys are written
            written = _state_records(settings)
            assert (written["open"], written["deleted"]) == (0, 0)
            assert {job.dedupe_key for job in quick} <= durable(settings)[1]
            async with running_dispatcher(settings):
                await submit(settings, 1)
                [(_, item)] = (await assignments(settings, 0, 3))[2:]
                await until_read(lambda: item.task.task_id in in_flight_durably(settings), "open")
                await answer(settings, item, TaskStatus.SUCCEEDED)
                await until_read(lambda: not in_flight_durably(settings), "closed")
            assert _state_records(settings)["open"] == 1
            assert _state_records(settings)["deleted"] == 1

    asyncio.run(scenario())


def _state_records(settings: Settings) -> dict[str, int]:
    """Records of the state changelog by kind: open-task records, deletions, ended-task records."""
    topic = settings.topics.state
    consumer = Consumer({**settings.kafka_config(), "group.id": f"{topic}-count"})
    counts = {"ended": 0, "open": 0, "deleted": 0}
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in range(settings.shards)
        }
        wanted = {p for p, end in ends.items() if end}
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        while wanted:
            for message in consumer.consume(100, timeout=1.0):
                key = message.key() or b""
                kind = "ended" if key.startswith(b"e:") else "open"
                counts["deleted" if message.value() is None else kind] += 1
                if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                    wanted.discard(message.partition())
    finally:
        consumer.close()
    return counts


def test_a_state_record_of_a_task_already_ended_is_deleted_when_recovered(
    topics: Settings, tmp_path: Path
) -> None:
    """A late write (an instance that lost its shard, once the broker answered) can leave an
    open record of a task that ended: the recovery drops it as ended, and deletes it, so that
    it is not taken for a lease once the ended task falls out of the duplicate window."""
    settings = with_state(topics, tmp_path / "state")
    stale = Task(task_id="stale", type="work", priority=1, payload=b"", submitted_at=1)
    record = TaskState(
        task=stale, shard=0, agent_id="a1", epoch=1, dispatched_at=1, lease_ms=300_000
    )
    producer = Producer(settings.kafka_config())
    topic = settings.topics.state
    producer.produce(topic, CODEC.encode(record), key=b"t:stale", partition=0)
    ended = EndedTasks(keys=("stale",), ended_at=1)
    producer.produce(topic, CODEC.encode(ended), key=b"e:000000000000", partition=0)
    assert producer.flush(10) == 0
    assert "stale" in durable(settings)[0]

    async def scenario() -> None:
        async with running_dispatcher(settings) as dispatcher:
            checkpointer = dispatcher.checkpointer
            assert checkpointer is not None
            await until(lambda: checkpointer.taken >= 2, "two checkpoints")
            assert dispatcher.core.phase_of("stale") is None

    asyncio.run(scenario())
    open_tasks, ended_keys = durable(settings)
    assert "stale" not in open_tasks and "stale" in ended_keys
