"""Helpers shared by the dispatcher tests (no tests here): run a dispatcher in-process, play an
agent by hand (registration, heartbeats, results), and read what the dispatcher wrote."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.adapters.client import TaskClient
from streams.adapters.dispatcher import Dispatcher, DispatcherConfig
from streams.adapters.dispatcher.state import group_id, read_shards
from streams.settings import Settings
from streams.wire import (
    AgentHeartbeat,
    AgentRegistration,
    AgentStatus,
    Assignment,
    AssignmentBatch,
    Codec,
    RegistrationStatus,
    ResultBatch,
    Task,
    TaskResult,
    TaskState,
    TaskStatus,
)
from tests.adapters.test_worker_support import WAIT_S, produce, read

CODEC = Codec()
HEARTBEAT_S = 0.2


def quiet_logs() -> None:
    """librdkafka is chatty; a test's captured log keeps our own lines."""
    logging.getLogger("streams.librdkafka").setLevel(logging.WARNING)


def dispatcher_config(**fields: Any) -> DispatcherConfig:
    """Fast timings for tests: heartbeats every 200 ms, DOWN after 1.5 s of silence."""
    defaults: dict[str, Any] = {
        "web_enabled": False,
        "heartbeat_interval_ms": 200,
        "suspect_after_ms": 600,
        "down_after_ms": 1_500,
        "aging_ms": None,
    }
    return DispatcherConfig(**{**defaults, **fields})


def with_state(settings: Settings, data_dir: Path) -> Settings:
    """``settings`` with the dispatcher's RocksDB in ``data_dir``, agent metrics on any port."""
    return settings.model_copy(update={"data_dir": data_dir, "agent_metrics_port": 0})


@contextlib.asynccontextmanager
async def running_dispatcher(
    settings: Settings, config: DispatcherConfig | None = None
) -> AsyncIterator[Dispatcher]:
    """A dispatcher started in-process and ready (registry read, shards recovered)."""
    quiet_logs()
    dispatcher = Dispatcher(settings, config or dispatcher_config())
    try:
        await dispatcher.start()
        yield dispatcher
    finally:
        await dispatcher.stop()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait for ``condition`` on the loop, failing with ``what`` past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.05)


async def until_read(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """``until`` for a ``check`` that reads from the broker: run in a thread, so the event loop
    (the dispatcher's, the fake agents' heartbeats) is never blocked by it."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.05)


def register(
    settings: Settings,
    agent_id: str,
    *,
    partition: int,
    epoch: int,
    capacity: int,
    status: RegistrationStatus = RegistrationStatus.ACTIVE,
) -> None:
    """Write an agent's registration as the agent runtime would."""
    now_ms = time.time_ns() // 1_000_000
    record = AgentRegistration(
        agent_id=agent_id,
        partition=partition,
        epoch=epoch,
        start_offset=0,
        status=status,
        registered_at=now_ms,
        renewed_at=now_ms,
        capacity=capacity,
    )
    produce(settings, settings.topics.registry, [record], key=agent_id)


class FakeAgent:
    """Heartbeats for an agent played by the test, every 200 ms while ``beating``."""

    def __init__(
        self, settings: Settings, agent_id: str, capacity: int, *, prefetch: int | None = None
    ) -> None:
        """``prefetch``: what its heartbeats say it reads ahead (None: nothing said)."""
        self.settings = settings
        self.agent_id = agent_id
        self.capacity = capacity
        self.prefetch = prefetch
        self.status = AgentStatus.READY
        self._producer = Producer(settings.kafka_config())

    def beat(self) -> None:
        record = AgentHeartbeat(
            agent_id=self.agent_id,
            capacity=self.capacity,
            skills=(),
            status=self.status,
            in_flight=0,
            completed=0,
            sent_at=time.time_ns() // 1_000_000,
            prefetch=self.prefetch,
        )
        topic = self.settings.topics.heartbeats
        self._producer.produce(topic, CODEC.encode(record), key=self.agent_id)
        self._producer.poll(0)

    @contextlib.asynccontextmanager
    async def beating(self) -> AsyncIterator[FakeAgent]:
        async def keep_beating() -> None:
            while True:
                self.beat()
                await asyncio.sleep(HEARTBEAT_S)

        task = asyncio.get_running_loop().create_task(keep_beating())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._producer.flush(WAIT_S)


async def answer(
    settings: Settings, item: Assignment, status: TaskStatus, error: str | None = None
) -> None:
    """Write the result of ``item`` to its reply partition, as an agent would (in a thread: a
    blocked event loop would starve the heartbeats)."""
    now_ms = time.time_ns() // 1_000_000
    result = TaskResult(
        task_id=item.task.task_id,
        agent_id=item.agent_id,
        attempt=item.task.attempt,
        status=status,
        error=error,
        started_at=now_ms,
        finished_at=now_ms,
    )
    await asyncio.to_thread(
        produce,
        settings,
        settings.topics.results,
        [ResultBatch(results=(result,))],
        partition=item.reply_partition,
        key=item.agent_id,
    )


async def submit(settings: Settings, count: int, **options: Any) -> list[Task]:
    """Submit ``count`` tasks of type ``work`` (priority 1 unless given), confirmed."""
    return await asyncio.to_thread(submit_now, settings, count, **options)


def submit_now(settings: Settings, count: int, **options: Any) -> list[Task]:
    """``submit``, blocking."""
    priority = options.pop("priority", 1)
    payload = options.pop("payload", b"{}")
    with TaskClient(settings) as client:
        return [
            client.submit_new(type="work", priority=priority, payload=payload, **options).task
            for _ in range(count)
        ]


async def assignments(
    settings: Settings, partition: int, count: int
) -> list[tuple[int, Assignment]]:
    """The first ``count`` assignments of one dispatch partition, with the offset of the
    record (batch) each came in (fails past WAIT_S)."""
    return await asyncio.to_thread(assignments_now, settings, partition, count)


def assignments_now(settings: Settings, partition: int, count: int) -> list[tuple[int, Assignment]]:
    """``assignments``, blocking."""
    topic = settings.topics.dispatch
    found: list[tuple[int, Assignment]] = []
    records = 0
    deadline = time.monotonic() + WAIT_S
    while len(found) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} assignments in {WAIT_S} s"
        batches = read(settings, topic, AssignmentBatch, count=records + 1, partitions=[partition])
        records = len(batches)
        found = [(offset, item) for offset, batch in batches for item in batch.assignments]
    return found[:count]


def committed(settings: Settings, topic: str) -> dict[int, int]:
    """The dispatcher group's committed offset per partition of ``topic`` (-1001: none)."""
    consumer = Consumer({**settings.kafka_config(), "group.id": group_id(settings)})
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.shards)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=WAIT_S)}
    finally:
        consumer.close()


def durable(settings: Settings) -> tuple[dict[str, TaskState], set[str]]:
    """What a restarted dispatcher would recover from the state changelog: the open tasks by
    id, and the dedupe keys of the ended ones."""
    recovered = read_shards(settings, CODEC, range(settings.shards))
    open_tasks = {state.task.task_id: state for shard in recovered for state in shard.open}
    return open_tasks, {key for shard in recovered for key in shard.ended}


def in_flight_durably(settings: Settings) -> dict[str, int]:
    """Task id -> attempt of every task the changelog holds as running on an agent."""
    open_tasks, _ = durable(settings)
    return {task_id: s.task.attempt for task_id, s in open_tasks.items() if s.agent_id}


def inputs_committed(settings: Settings) -> bool:
    """Whether the dispatcher committed every input topic up to its end."""
    topics = [*settings.topics.all_tasks(), *settings.topics.all_retries(), settings.topics.results]
    for topic in topics:
        ends = {p: end for p, end in end_offsets(settings, topic).items() if end > 0}
        done = committed(settings, topic)
        if any(done.get(p, -1) < end for p, end in ends.items()):
            return False
    return True


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({**settings.kafka_config(), "group.id": "taskd-test-offsets"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=WAIT_S)[1]
            for p in range(settings.shards)
        }
    finally:
        consumer.close()
