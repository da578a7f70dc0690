"""Failures as a user sees them: retryable ones climb the retry tiers then end MAX_ATTEMPTS,
fatal ones FAILED, garbage bytes and invalid JSON MALFORMED; the rest flows on."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient, replay_count
from streams.adapters.dlq import plan_replay, read_dead_letters
from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import DeadLetter, Task, TaskStatus
from tests.adapters.test_dispatcher_support import with_state
from tests.e2e.test_pipeline_support import (
    all_results,
    pipeline,
    read_all,
    until_dead,
    until_results,
    work,
)


def _settings(topics: Settings, tmp_path: Path) -> Settings:
    settings = with_state(topics, tmp_path / "state").model_copy(
        update={"retry_tiers_ms": (200, 400)}
    )
    create_topics(settings)
    return settings


def _submit(settings: Settings, payloads: list[bytes]) -> list[Task]:
    with TaskClient(settings) as client:
        return [
            client.submit_new(type="work", priority=2, payload=payload, max_attempts=3).task
            for payload in payloads
        ]


def test_retryable_fatal_and_malformed_end_in_the_dead_letters(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path)
    garbage = [b"\x07\x00garbage", b'{"type": 5}', b'{"type": "work", "oops"}']

    async def scenario() -> tuple[list[Task], list[Task], list[Task], list[Any], list[Any]]:
        async with pipeline(settings, [2, 3]):
            retryable = await asyncio.to_thread(_submit, settings, [work(1, "retryable")] * 5)
            fatal = await asyncio.to_thread(_submit, settings, [work(1, "fatal")] * 3)
            await asyncio.to_thread(_produce_raw, settings, garbage)
            good = await asyncio.to_thread(_submit, settings, [work(1)] * 20)
            letters = await until_dead(settings, 5 + 3 + 3)
            results = await until_results(settings, {task.task_id for task in good})
        return retryable, fatal, good, letters, results

    retryable, fatal, good, letters, results = asyncio.run(scenario())
    by_reason: dict[DeadLetterReason, set[str | bytes | None]] = {}
    for letter in letters:
        key = letter.task.task_id if letter.task is not None else letter.raw
        by_reason.setdefault(letter.reason, set()).add(key)
    assert by_reason[DeadLetterReason.MAX_ATTEMPTS] == {task.task_id for task in retryable}
    assert by_reason[DeadLetterReason.FAILED] == {task.task_id for task in fatal}
    assert by_reason[DeadLetterReason.MALFORMED] == set(garbage)
    assert all(le.attempts == 3 for le in letters if le.reason is DeadLetterReason.MAX_ATTEMPTS)
    tries = Counter(r.task_id for r in results if r.status is TaskStatus.RETRYABLE)
    assert tries == {task.task_id: 3 for task in retryable}
    tiers = [read_all(settings, settings.topics.retry(tier), Task) for tier in (0, 1)]
    assert sorted(t.attempt for t in tiers[0]) == [1] * 5
    assert sorted(t.attempt for t in tiers[1]) == [2] * 5
    ok = {r.task_id for r in results if r.status is TaskStatus.SUCCEEDED}
    assert ok == {task.task_id for task in good}


def _produce_raw(settings: Settings, values: list[bytes]) -> None:
    producer = Producer(settings.kafka_config())
    for value in values:
        producer.produce(settings.topics.tasks(2), value)
    assert producer.flush(30) == 0


def test_a_replayed_dead_letter_runs_again_exactly_once(topics: Settings, tmp_path: Path) -> None:
    """`taskd dlq replay` sends a dead letter back under the same task id: the dispatcher's
    duplicate window must let the replay through once, and drop a second copy of it."""
    settings = _settings(topics, tmp_path)

    async def scenario() -> tuple[list[Task], list[Any], list[Any]]:
        async with pipeline(settings, [2]):
            fatal = await asyncio.to_thread(_submit, settings, [work(1, "fatal")] * 2)
            await until_dead(settings, 2)
            entries = await asyncio.to_thread(read_dead_letters, settings)
            replays = plan_replay(entries).tasks
            with TaskClient(settings) as client:
                for task in (*replays, *replays):  # the second copy must be dropped
                    client.submit(task)
            letters = await until_dead(settings, 4)
            await asyncio.sleep(2)  # a wrongly accepted second copy would die by now
            results = await asyncio.to_thread(all_results, settings)
            letters = await asyncio.to_thread(read_all, settings, settings.topics.dlq, DeadLetter)
        return fatal, letters, results

    fatal, letters, results = asyncio.run(scenario())
    ids = {task.task_id for task in fatal}
    assert Counter(letter.task.task_id for letter in letters) == {task_id: 2 for task_id in ids}
    replayed = [letter.task for letter in letters if replay_count(letter.task) == 1]
    assert {task.task_id for task in replayed} == ids
    assert Counter(r.task_id for r in results) == {task_id: 2 for task_id in ids}
