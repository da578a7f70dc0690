"""Helpers shared by the worker tests (no tests here): write assignments as the dispatcher
would, read records back from the broker, and run an agent in-process with bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams.settings import Settings
from streams.wire import (
    Assignment,
    AssignmentBatch,
    Codec,
    ResultBatch,
    Task,
    TaskResult,
    WireRecord,
)
from streams.worker import Agent, AgentConfig

WAIT_S = 30.0
"""Upper bound of every wait on the broker or an agent; a test fails with a message past it."""

R = TypeVar("R", bound=WireRecord)
CODEC = Codec()


def assignment(
    *,
    epoch: int,
    task_type: str = "work",
    payload: bytes = b"{}",
    task_id: str | None = None,
    attempt: int = 0,
    reply_partition: int = 0,
    agent_id: str = "a1",
) -> Assignment:
    """An Assignment as the dispatcher writes it."""
    task = Task(
        task_id=task_id or uuid.uuid4().hex,
        type=task_type,
        priority=1,
        payload=payload,
        submitted_at=1_790_000_000_000,
        attempt=attempt,
    )
    return Assignment(
        task=task,
        agent_id=agent_id,
        epoch=epoch,
        dispatched_at=1_790_000_000_001,
        lease_ms=30_000,
        dispatcher_shard=reply_partition,
        reply_partition=reply_partition,
    )


def produce(
    settings: Settings, topic: str, records: list[WireRecord], *, partition: int = 0, key: str = "k"
) -> None:
    """Write ``records`` to one partition of ``topic`` and wait until the broker has them."""
    producer = Producer({**settings.kafka_config(), "enable.idempotence": True, "acks": "all"})
    for record in records:
        producer.produce(topic, CODEC.encode(record), key=key, partition=partition)
    assert producer.flush(WAIT_S) == 0, f"could not write {len(records)} records to {topic}"


def dispatch(
    settings: Settings,
    partition: int,
    assignments: list[Assignment],
    *,
    together: bool = False,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Write assignments to an agent's dispatch partition as the dispatcher does: in
    :class:`AssignmentBatch` records, one per assignment (``together``: all in one), each with
    ``headers``."""
    producer = Producer({**settings.kafka_config(), "enable.idempotence": True, "acks": "all"})
    groups = [assignments] if together else [[item] for item in assignments]
    for group in groups:
        producer.produce(
            settings.topics.dispatch,
            CODEC.encode(AssignmentBatch(assignments=tuple(group))),
            key=group[0].agent_id,
            partition=partition,
            headers=headers,
        )
    assert producer.flush(WAIT_S) == 0, "could not write the assignments"


def read_results(settings: Settings, count: int) -> list[tuple[int, TaskResult]]:
    """(partition, result) of the first ``count`` results an agent wrote; fails past WAIT_S."""
    found: list[tuple[int, TaskResult]] = []
    records = 0
    deadline = time.monotonic() + WAIT_S
    while len(found) < count:
        assert time.monotonic() < deadline, (
            f"{len(found)} results within {WAIT_S} s, {count} wanted"
        )
        batches = read(settings, settings.topics.results, ResultBatch, count=records)
        records = len(batches) + 1
        found = [(partition, result) for partition, batch in batches for result in batch.results]
    return found


def read(
    settings: Settings,
    topic: str,
    record_type: type[R],
    *,
    count: int,
    partitions: list[int] | None = None,
) -> list[tuple[int, R]]:
    """(partition, record) of the first ``count`` records of ``topic``; fails past WAIT_S.

    Reads every partition (or ``partitions``) from the beginning, and a little past ``count``
    so that an extra record shows up too.
    """
    consumer = Consumer({**settings.kafka_config(), "group.id": f"test-{uuid.uuid4().hex}"})
    metadata = consumer.list_topics(topic, timeout=WAIT_S).topics[topic]
    chosen = sorted(metadata.partitions) if partitions is None else partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in chosen])
    found: list[tuple[int, R]] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(found) < count and time.monotonic() < deadline:
            found += _decoded(consumer.consume(100, timeout=0.2), record_type)
        found += _decoded(consumer.consume(100, timeout=0.5), record_type)
    finally:
        consumer.close()
    assert len(found) >= count, f"{topic}: {len(found)} records within {WAIT_S} s, {count} wanted"
    return found


def _decoded(messages: list[Any], record_type: type[R]) -> list[tuple[int, R]]:
    out = []
    for message in messages:
        assert message.error() is None, message.error()
        out.append((message.partition(), CODEC.decode(message.value(), record_type)))
    return out


def committed(settings: Settings, group: str, partition: int) -> int:
    """The offset ``group`` committed for a dispatch partition (negative: none)."""
    consumer = Consumer({**settings.kafka_config(), "group.id": group})
    try:
        tp = TopicPartition(settings.topics.dispatch, partition)
        (found,) = consumer.committed([tp], timeout=WAIT_S)
        return int(found.offset)
    finally:
        consumer.close()


def sample(agent: Agent, name: str, **labels: str) -> float:
    """The current value of one of the agent's metrics (0 when not yet observed)."""
    return agent.metrics.registry.get_sample_value(name, labels) or 0.0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` on the loop, failing with ``what`` past WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        await asyncio.sleep(0.02)


def config(**fields: Any) -> AgentConfig:
    """An agent config for tests: agent "a1", 2 slots, heartbeats every 200 ms."""
    defaults: dict[str, Any] = {"agent_id": "a1", "capacity": 2, "heartbeat_interval_ms": 200}
    return AgentConfig(**{**defaults, **fields})


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    """Run ``agent`` until the block ends, then stop it and wait for its drain (bounded)."""
    run = asyncio.get_running_loop().create_task(agent.run())
    try:
        await asyncio.wait_for(agent.wait_ready(), WAIT_S)
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(run, WAIT_S)


def on_any_port(settings: Settings) -> Settings:
    """``settings`` with the agent metrics on a free port, so agents in one test don't clash."""
    return settings.model_copy(update={"agent_metrics_port": 0})
