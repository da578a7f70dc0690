"""Results back to the producer, as a user of the client sees them: a handle per task whose
``result()`` returns the handler's output or raises with the dead-letter reason; many waited
for at once; awaited in asyncio; a kcat-style JSON task matched by the key it was sent with."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient
from streams.core.model import DeadLetterReason
from streams.errors import (
    ConfigError,
    DeliveryError,
    KafkaError,
    ResultTimeoutError,
    TaskFailedError,
)
from streams.settings import Settings
from streams.wire import REPLY_PARTITION_HEADER, OutcomeStatus, Task, TaskOutcome, TaskResult
from tests.adapters.test_dispatcher_support import until_read, with_state
from tests.e2e.test_pipeline_support import all_results, pipeline, read_all, read_values, work
from tests.e2e.test_submit_cli import taskd

WAIT_S = 60.0


def _settings(topics: Settings, tmp_path: Path) -> Settings:
    settings = with_state(topics, tmp_path / "state").model_copy(
        update={"retry_tiers_ms": (200, 400)}
    )
    create_topics(settings)
    return settings


def test_a_handle_returns_the_output_or_raises_with_the_dead_letter_reason(
    topics: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(topics, tmp_path)

    async def scenario() -> None:
        async with pipeline(settings, [4, 4]):
            await asyncio.to_thread(_outcomes_as_a_client_sees_them, settings)

    with caplog.at_level(logging.WARNING, logger="streams.adapters.dispatcher"):
        asyncio.run(scenario())
    letters = [r.getMessage() for r in caplog.records if "dead letter" in r.getMessage()]
    assert any("FAILED after 1 attempt(s)" in line for line in letters), letters
    assert any("MAX_ATTEMPTS after 3 attempt(s)" in line for line in letters), letters
    assert any("EXPIRED" in line for line in letters), letters


def _outcomes_as_a_client_sees_them(settings: Settings) -> None:
    with TaskClient(settings, results=True) as client:
        ok = client.submit_new(type="work", priority=1, payload=work(5))
        fatal = client.submit_new(type="work", priority=1, payload=work(1, "fatal"))
        flaky = client.submit_new(type="work", priority=2, payload=work(1, "retryable"))
        past = time.time_ns() // 1_000_000 - 60_000
        expired = client.submit(
            Task.new(type="work", priority=3, now_ms=past, payload=work(), ttl_ms=1_000)
        )
        many = [client.submit_new(type="work", priority=0, payload=work(2)) for _ in range(50)]

        output = ok.result(timeout=WAIT_S)
        assert output is not None and json.loads(output)["task_id"] == ok.task_id
        assert ok.outcome().status is OutcomeStatus.SUCCEEDED and ok.outcome().attempts == 1

        with pytest.raises(TaskFailedError, match="dead-lettered FAILED") as failed:
            fatal.result(timeout=WAIT_S)
        assert failed.value.outcome.dead_letter_reason is DeadLetterReason.FAILED
        assert "failed on purpose" in (failed.value.outcome.error or "")

        retried = flaky.outcome(timeout=WAIT_S)
        assert retried.dead_letter_reason is DeadLetterReason.MAX_ATTEMPTS
        assert retried.attempts == 3 and retried.status is OutcomeStatus.FAILED

        never_ran = expired.outcome(timeout=WAIT_S)
        assert never_ran.dead_letter_reason is DeadLetterReason.EXPIRED
        assert never_ran.started_at is None and never_ran.agent_id is None

        outcomes = client.wait(many, timeout_s=WAIT_S)
        assert [outcome.task_id for outcome in outcomes] == [h.task_id for h in many]
        assert all(outcome.succeeded for outcome in outcomes)
        by_id = list(client.as_completed([h.task_id for h in many], timeout_s=WAIT_S))
        assert sorted(o.task_id for o in by_id) == sorted(h.task_id for h in many)


def test_a_handle_is_awaited_and_a_wait_that_runs_out_says_how_many_are_left(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path)

    async def scenario() -> None:
        with TaskClient(settings, results=True) as client:
            waiting = client.submit_new(type="work", priority=1, payload=work())
            await asyncio.to_thread(client.flush)
            with pytest.raises(ResultTimeoutError, match="1 of 1 tasks have not ended"):
                await asyncio.to_thread(client.wait, [waiting], 0.5)  # no dispatcher yet
            async with pipeline(settings, [2]):
                output = await waiting
        assert output is not None and json.loads(output)["task_id"] == waiting.task_id

    asyncio.run(scenario())


def test_a_json_task_sent_without_an_id_is_matched_by_its_kafka_key(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path)
    topic = settings.topics.tasks(1)

    def send(*tasks: tuple[str, int]) -> None:
        producer = Producer(settings.kafka_config())
        for key, partition in tasks:
            producer.produce(topic, _json_task(partition), key.encode())
        assert producer.flush(10) == 0

    async def scenario() -> tuple[list[TaskOutcome], int]:
        async with pipeline(settings, [2]):
            send(("order-17", 0), ("order-18", 0), ("order-19", 9_999))
            ran = await _until_result_count(settings, 3)
            send(("marker", 0))  # its outcome comes after any the others could have had
            await _until_result_count(settings, 4)
            return await _until_outcome_count(settings, 3), len(ran)

    outcomes, ran = asyncio.run(scenario())
    assert ran == 3  # the one asking for a partition the topic lacks ran, with no outcome
    assert sorted(o.source_key or "" for o in outcomes) == ["marker", "order-17", "order-18"]
    assert all(o.task_id.startswith(f"{topic}/") and o.succeeded for o in outcomes)


def _json_task(reply_partition: int) -> bytes:
    """A task as kcat would send it: no id, its reply partition among its headers."""
    headers = {REPLY_PARTITION_HEADER: str(reply_partition)}
    return json.dumps({"type": "work", "payload": {"work_ms": 1}, "headers": headers}).encode()


async def _until_result_count(settings: Settings, count: int) -> list[TaskResult]:
    """The results, once there are ``count``; fails past WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = await asyncio.to_thread(all_results, settings)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} results, {count} expected"
        await asyncio.sleep(0.2)


async def _until_outcome_count(settings: Settings, count: int) -> list[TaskOutcome]:
    """The outcomes on ``replies``, once there are ``count``; fails past WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = await asyncio.to_thread(read_all, settings, settings.topics.replies, TaskOutcome)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} outcomes, {count} expected"
        await asyncio.sleep(0.2)


def test_taskd_submit_wait_prints_each_outcome_as_a_json_line(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path)
    lines = [
        {"task_id": f"w-{i}", "type": "work", "priority": 1, "payload": {"work_ms": 1}}
        for i in range(3)
    ]
    lines.append({"task_id": "w-bad", "type": "work", "priority": 1, "payload": {"fail": "fatal"}})
    stdin = "".join(json.dumps(line) + "\n" for line in lines) + '{"type": 5}\n'  # malformed

    async def scenario() -> subprocess.CompletedProcess[str]:
        async with pipeline(settings, [2]):
            return await asyncio.to_thread(
                taskd, settings, "submit", "--wait", "--wait-timeout", "60", stdin=stdin
            )

    result = asyncio.run(scenario())
    by_id = {row["task_id"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(by_id) == {"w-0", "w-1", "w-2", "w-bad"}, result.stderr
    assert by_id["w-0"]["status"] == "SUCCEEDED" and by_id["w-0"]["output"]["task_id"] == "w-0"
    assert by_id["w-bad"]["status"] == "FAILED"
    assert by_id["w-bad"]["dead_letter_reason"] == "FAILED"
    assert result.returncode == 1 and "1 of 4 task(s) did not succeed" in result.stderr
    assert "submitted 4 tasks (1 failed)" in result.stderr  # the malformed line, not waited for
    assert "line 5: " in result.stderr


def test_with_record_format_json_every_record_people_read_is_json_text(
    topics: Settings, tmp_path: Path
) -> None:
    settings = _settings(topics, tmp_path).model_copy(update={"record_format": "json"})

    async def scenario() -> tuple[bytes | None, TaskOutcome]:
        async with pipeline(settings, [2]):
            with TaskClient(settings, results=True) as client:
                ok = client.submit_new(type="work", priority=1, payload=work(1))
                fatal = client.submit_new(type="work", priority=1, payload=work(1, "fatal"))
                output = await ok
                failed = await asyncio.to_thread(fatal.outcome, WAIT_S)
        return output, failed

    output, failed = asyncio.run(scenario())
    assert output is not None and json.loads(output)["worked_ms"] == 1
    assert failed.dead_letter_reason is DeadLetterReason.FAILED
    names = settings.topics
    for topic, least in ((names.results, 1), (names.replies, 2), (names.dlq, 1)):
        values = read_values(settings, topic)
        assert len(values) >= least, topic
        assert all(isinstance(json.loads(value), dict) for value in values), topic
    (letter,) = [json.loads(value) for value in read_values(settings, names.dlq)]
    assert letter["reason"] == "FAILED" and letter["task"]["task_id"] == failed.task_id


def test_a_handle_fails_at_once_when_no_outcome_can_come(topics: Settings) -> None:
    """A task that never reached the broker, or whose client was closed while it waited, gives
    an error, not a wait for ever."""
    create_topics(topics)
    missing = topics.topics.tasks(3)  # the topic this task goes to is gone
    admin = AdminClient(topics.kafka_config())
    admin.delete_topics([missing])[missing].result()
    deadline = time.monotonic() + WAIT_S  # deleted: no longer in the broker's metadata
    while missing in admin.list_topics(timeout=WAIT_S).topics:
        assert time.monotonic() < deadline, f"{missing} still listed after {WAIT_S} s"
        time.sleep(0.2)
    # the broker would create the deleted topic again at the producer's first metadata request
    # (auto.create.topics.enable is on by default): this task must not reach it
    expiring = {"message.timeout.ms": 3_000, "allow.auto.create.topics": False}
    with TaskClient(topics, results=True, producer_config=expiring) as client:
        lost = client.submit_new(type="work", priority=3, payload=work())
        with pytest.raises(DeliveryError, match=missing):
            lost.result(timeout=WAIT_S)
        with pytest.raises(DeliveryError):
            client.flush(WAIT_S)
    client = TaskClient(topics, results=True)
    waiting = client.submit_new(type="work", priority=1, payload=work())  # no dispatcher runs
    client.close()
    with pytest.raises(KafkaError, match="results reader has stopped"):
        waiting.result(timeout=WAIT_S)
    assert "NO OUTCOME" in repr(waiting)
    unasked = TaskClient(topics).submit_new(type="work", priority=1, payload=work())
    with pytest.raises(ConfigError, match="results=True"):
        unasked.result(timeout=0)
    assert "NO OUTCOME" in repr(unasked)


def test_a_client_started_again_gets_the_outcomes_of_tasks_that_ended_while_it_was_away(
    topics: Settings, tmp_path: Path
) -> None:
    """The first client sends and closes without waiting; the tasks end. A client started
    after that, on the same reply partition, reads from the time they were sent and gets
    every outcome; one reading from the end (the default) gets none of them."""
    settings = _settings(topics, tmp_path)
    partition = 1

    async def scenario() -> tuple[list[str], list[TaskOutcome]]:
        async with pipeline(settings, [4]):
            sent_ms = time.time_ns() // 1_000_000
            with TaskClient(settings, results=True, reply_partition=partition) as first:
                ids = [first.submit_new(type="work", priority=1).task_id for _ in range(5)]

            def written() -> bool:
                return len(read_values(settings, settings.topics.replies)) >= len(ids)

            await until_read(written, "the outcomes written")
            late = TaskClient(settings, results=True, reply_partition=partition)
            with late, pytest.raises(ResultTimeoutError, match="5 of 5 tasks have not ended"):
                await asyncio.to_thread(late.wait, ids, 1.0)
            with TaskClient(
                settings, results=True, reply_partition=partition, replies_since_ms=sent_ms
            ) as again:
                outcomes = await asyncio.to_thread(again.wait, ids, WAIT_S)
            later = time.time_ns() // 1_000_000 + 3_600_000  # no outcome is that recent
            ahead = TaskClient(
                settings, results=True, reply_partition=partition, replies_since_ms=later
            )
            with ahead, pytest.raises(ResultTimeoutError, match="5 of 5 tasks have not ended"):
                await asyncio.to_thread(ahead.wait, ids, 1.0)
        return ids, outcomes

    ids, outcomes = asyncio.run(scenario())
    assert [outcome.task_id for outcome in outcomes] == ids
    assert all(outcome.succeeded for outcome in outcomes)


def test_reading_outcomes_since_a_time_needs_results_and_the_partition(topics: Settings) -> None:
    with pytest.raises(ConfigError, match="needs results=True"):
        TaskClient(topics, replies_since_ms=1)
    with pytest.raises(ConfigError, match="reply_partition"):
        TaskClient(topics, results=True, replies_since_ms=1)
