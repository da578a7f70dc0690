"""Tasks too large for the system, as a producer would send them (straight to the task topics,
past the client's own check): each ends in the dead letters TOO_LARGE with a bounded excerpt,
good tasks flow past it, and a restarted dispatcher does not trip on it again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient
from streams.core.model import DeadLetterReason
from streams.errors import EncodeError
from streams.settings import Settings
from streams.wire import Codec, DeadLetter, Task
from streams.wire.limits import EXCERPT_BYTES
from tests.adapters.test_dispatcher_support import with_state
from tests.e2e.test_pipeline_support import (
    pipeline,
    read_all,
    read_values,
    until_dead,
    until_results,
    work,
)

BIG_ID = "i" * 600_000
"""The issue's case: a valid task whose id alone is 600 KB."""


def _settings(topics: Settings, tmp_path: Path) -> Settings:
    settings = with_state(topics, tmp_path / "state").model_copy(
        update={"max_output_bytes": 160_000}
    )
    create_topics(settings)
    return settings


def _produce(settings: Settings, records: list[bytes]) -> None:
    """Write ``records`` to one partition of a task topic, past the client's checks."""
    producer = Producer({**settings.kafka_config(), "message.max.bytes": 2_000_000})
    for value in records:
        producer.produce(settings.topics.tasks(1), value, partition=0)
    assert producer.flush(30) == 0


def test_oversized_tasks_are_dead_lettered_and_never_stall_the_dispatcher(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path)
    big = Task(task_id=BIG_ID, type="work", priority=1, payload=b"{}", submitted_at=1)
    big_id = Codec().encode(big)
    big_payload = json.dumps({"type": "work", "payload": "p" * 400_000}).encode()

    async def scenario() -> list[DeadLetter]:
        async with pipeline(settings, [4]):
            await asyncio.to_thread(_produce, settings, [big_id, big_payload])
            with TaskClient(settings) as client:
                good = [
                    client.submit_new(type="work", priority=1, payload=work()).task
                    for _ in range(20)
                ]
            await until_results(settings, {task.task_id for task in good})
            letters = await until_dead(settings, 2)
            assert [letter.reason for letter in letters] == [DeadLetterReason.TOO_LARGE] * 2
        # a dispatcher started again reads on from the committed offsets: a task behind the
        # big records in their partition runs, and they are not dead-lettered again
        async with pipeline(settings, [4]):
            after = Task(task_id="after", type="work", priority=1, payload=work(), submitted_at=1)
            await asyncio.to_thread(_produce, settings, [Codec().encode(after)])
            await until_results(settings, {after.task_id})
        return await asyncio.to_thread(read_all, settings, settings.topics.dlq, DeadLetter)

    letters = asyncio.run(scenario())
    assert len(letters) == 2
    assert all(letter.raw is not None and len(letter.raw) <= EXCERPT_BYTES for letter in letters)
    raw_letters = read_values(settings, settings.topics.dlq)
    assert all(len(value) < EXCERPT_BYTES * 3 for value in raw_letters)  # excerpts, not copies


def test_a_client_refuses_an_oversized_task_before_sending_it(topics: Settings) -> None:
    with TaskClient(topics) as client, pytest.raises(EncodeError, match="max_payload_bytes"):
        client.submit_new(type="work", priority=1, payload=b"p" * (topics.max_payload_bytes + 1))


def test_large_tasks_and_outputs_are_cut_into_records_that_fit(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path)
    echo = "tests.e2e.test_size_limits:echo"

    async def scenario() -> None:
        async with pipeline(settings, [16], handlers=[echo]):
            with TaskClient(settings) as client:
                # 16 tasks of 150 KB at once: MBs of assignments for one agent in a pass, and
                # as much of results in one turn
                large = [
                    client.submit_new(type="work", priority=1, payload=b"x" * 150_000).task
                    for _ in range(16)
                ]
                too_much = client.submit_new(type="work", priority=1, payload=b"y" * 170_000).task
            ids = {task.task_id for task in large}
            results = await until_results(settings, ids)
            outputs = {r.task_id: r.output for r in results if r.task_id in ids}
            assert outputs == {task_id: b"x" * 150_000 for task_id in ids}
            letters = await until_dead(settings, 1)
            assert letters[0].task is not None and letters[0].task.task_id == too_much.task_id
            assert letters[0].reason is DeadLetterReason.FAILED
            assert "over the limit of 160,000 (max_output_bytes)" in letters[0].error

    asyncio.run(scenario())


def echo(task: Task) -> bytes:
    """Returns the payload: the output is as large as the task."""
    return task.payload
