"""Dead letters against the real broker: read a snapshot, select, replay through the client.

``write_dead_letters`` writes the dead-letter topic as the dispatcher would (the codec's
single-object encoding, keyed by task id), plus one record that is no dead letter at all; the
CLI tests use it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from streams.adapters.client import REPLAY_HEADER, TaskClient
from streams.adapters.dlq import (
    DlqEntry,
    parse_since,
    plan_replay,
    read_dead_letters,
    replay_task,
    select,
)
from streams.core.model import DeadLetterReason
from streams.errors import ConfigError, TopicError
from streams.settings import Settings
from streams.wire import Codec, DeadLetter, Task
from tests.adapters.test_client import read_topics

OLD_MS = 1_600_000_000_000
"""2020-09-13: long before any ``--since`` the tests use."""
GARBAGE = b"not a dead letter"


@dataclass(frozen=True)
class Letters:
    """What ``write_dead_letters`` wrote, by the role each letter plays in the tests."""

    max_attempts: tuple[DeadLetter, ...]
    expired_recent: DeadLetter
    expired_old: DeadLetter
    malformed: DeadLetter
    failed: DeadLetter

    @property
    def all(self) -> tuple[DeadLetter, ...]:
        return (*self.max_attempts, self.expired_recent, self.expired_old, self.malformed,
                self.failed)  # fmt: skip


def _task(task_id: str, priority: int, **fields: object) -> Task:
    options = {"attempt": 3, "max_attempts": 3, "tenant": "acme", **fields}
    return Task(
        task_id=task_id,
        type="resize",
        priority=priority,
        payload=b"{}",
        submitted_at=OLD_MS,
        **options,  # type: ignore[arg-type]
    )


def _letter(
    task: Task | None, reason: DeadLetterReason, dead_at: int, **fields: object
) -> DeadLetter:
    return DeadLetter(
        task=task,
        reason=reason,
        error=f"{reason.value.lower()} after trying",
        attempts=3,
        dead_at=dead_at,
        source_topic="taskd.tasks.p0",
        source_partition=0,
        source_offset=7,
        **fields,  # type: ignore[arg-type]
    )


def write_dead_letters(settings: Settings) -> Letters:
    """Seven dead letters and one undecodable record on the dead-letter topic, confirmed."""
    recent_ms = time.time_ns() // 1_000_000 - 600_000  # ten minutes ago
    mx = DeadLetterReason.MAX_ATTEMPTS
    letters = Letters(
        max_attempts=(
            _letter(_task("max-a", 0), mx, recent_ms),
            _letter(_task("max-b", 2, affinity_key="user-7"), mx, recent_ms + 1),
            _letter(_task("max-c", 3, headers=((REPLAY_HEADER, "1"),)), mx, recent_ms + 2),
        ),
        expired_recent=_letter(_task("exp-new", 1), DeadLetterReason.EXPIRED, recent_ms + 3),
        expired_old=_letter(_task("exp-old", 1), DeadLetterReason.EXPIRED, OLD_MS),
        malformed=_letter(None, DeadLetterReason.MALFORMED, recent_ms + 4, raw=b"\x00junk"),
        failed=_letter(_task("fail-a", 0), DeadLetterReason.FAILED, recent_ms + 5),
    )
    codec = Codec()
    producer = Producer({**settings.kafka_config(), "enable.idempotence": True, "acks": "all"})
    for letter in letters.all:
        key = None if letter.task is None else letter.task.task_id.encode()
        producer.produce(settings.topics.dlq, codec.encode(letter), key)
    producer.produce(settings.topics.dlq, GARBAGE, b"garbage")
    assert producer.flush(30) == 0
    return letters


def _by_id(entries: list[DlqEntry]) -> dict[str, DlqEntry]:
    return {
        entry.letter.task.task_id: entry
        for entry in entries
        if entry.letter is not None and entry.letter.task is not None
    }


def test_reading_returns_every_record_and_keeps_the_undecodable_one(topics: Settings) -> None:
    letters = write_dead_letters(topics)
    entries = read_dead_letters(topics, timeout_s=60)
    assert len(entries) == 8
    decoded = sorted((e.letter for e in entries if e.letter is not None), key=repr)
    assert decoded == sorted(letters.all, key=repr)
    (undecodable,) = [e for e in entries if e.letter is None]
    assert undecodable.problem is not None and "single-object" in undecodable.problem
    assert undecodable.dead_at_ms == undecodable.timestamp_ms > OLD_MS


def test_an_empty_topic_reads_as_nothing_and_a_missing_one_is_a_clear_error(
    settings: Settings, topics: Settings
) -> None:
    assert read_dead_letters(topics, timeout_s=60) == []
    missing = settings.model_copy(update={"topic_prefix": settings.topic_prefix + "missing."})
    with pytest.raises(TopicError, match="does not exist"):
        read_dead_letters(missing, timeout_s=30)


def test_select_filters_by_reason_and_time_oldest_first(topics: Settings) -> None:
    letters = write_dead_letters(topics)
    entries = read_dead_letters(topics, timeout_s=60)
    maxed = select(entries, reason=DeadLetterReason.MAX_ATTEMPTS)
    assert [e.letter for e in maxed] == list(letters.max_attempts)
    expired = select(entries, reason=DeadLetterReason.EXPIRED)
    assert [e.letter for e in expired] == [letters.expired_old, letters.expired_recent]
    recent = select(entries, since_ms=letters.expired_recent.dead_at)
    assert [e.letter for e in recent] == [
        letters.expired_recent,
        letters.malformed,
        letters.failed,
        None,  # the undecodable record, by its Kafka timestamp (now)
    ]
    assert select(entries, reason=DeadLetterReason.EXPIRED, since_ms=OLD_MS + 1) == expired[1:]


def test_replaying_sends_each_task_back_with_attempt_zero_and_one_more_replay(
    topics: Settings,
) -> None:
    letters = write_dead_letters(topics)
    plan = plan_replay(select(read_dead_letters(topics), reason=DeadLetterReason.MAX_ATTEMPTS))
    assert (plan.malformed, plan.undecodable, plan.superseded) == (0, 0, 0)
    with TaskClient(topics) as client:
        report = client.submit_many(plan.tasks, timeout_s=60)
    assert (report.delivered, report.failed) == (3, 0)

    records = read_topics(topics, topics.topics.all_tasks())
    codec = Codec()
    sent = {codec.decode(r.value, Task).task_id: (r, codec.decode(r.value, Task)) for r in records}
    assert len(records) == 3 and set(sent) == {"max-a", "max-b", "max-c"}
    for letter in letters.max_attempts:
        assert letter.task is not None
        record, task = sent[letter.task.task_id]
        expected_count = "2" if letter.task.task_id == "max-c" else "1"
        assert task.attempt == 0
        assert dict(task.headers)[REPLAY_HEADER] == expected_count
        assert record.headers == {REPLAY_HEADER: expected_count.encode()}
        assert record.topic == topics.topics.tasks(letter.task.priority)
        assert record.key == (letter.task.affinity_key or letter.task.task_id).encode()
        unchanged = replay_task(letter.task)
        assert task == unchanged and task.submitted_at == letter.task.submitted_at


def test_the_replay_plan_skips_raw_letters_and_sends_a_task_once() -> None:
    task = _task("t", 0)
    again = replay_task(task)  # replayed once, then dead-lettered again
    entries = [
        DlqEntry(0, 0, 1, _letter(task, DeadLetterReason.MAX_ATTEMPTS, 10)),
        DlqEntry(0, 1, 2, _letter(again, DeadLetterReason.MAX_ATTEMPTS, 20)),
        DlqEntry(1, 0, 3, _letter(None, DeadLetterReason.MALFORMED, 30, raw=b"x")),
        DlqEntry(1, 1, 4, None, "garbage"),
    ]
    plan = plan_replay(entries)
    assert (plan.malformed, plan.undecodable, plan.superseded) == (1, 1, 1)
    (sent,) = plan.tasks
    assert dict(sent.headers)[REPLAY_HEADER] == "2" and sent.attempt == 0


NOW_MS = 1_790_000_000_000


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("15m", NOW_MS - 15 * 60_000),
        ("2h", NOW_MS - 2 * 3_600_000),
        ("90s", NOW_MS - 90_000),
        ("7d", NOW_MS - 7 * 86_400_000),
        ("1w", NOW_MS - 604_800_000),
        ("0m", NOW_MS),
        ("2026-09-21T14:13:20Z", 1_790_000_000_000),
        ("2026-09-21T14:13:20", 1_790_000_000_000),
        ("2026-09-21T16:13:20.5+02:00", 1_790_000_000_500),
        ("2026-09-21", 1_789_948_800_000),
    ],
)
def test_since_reads_iso_times_and_ages(text: str, expected_ms: int) -> None:
    assert parse_since(text, now_ms=NOW_MS) == expected_ms


@pytest.mark.parametrize("text", ["", "yesterday", "15 minutes", "-5m", "2h ago", "1.5h"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ConfigError, match="ISO-8601"):
        parse_since(text, now_ms=NOW_MS)
