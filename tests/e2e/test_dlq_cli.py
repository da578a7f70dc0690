"""``taskd dlq list|replay`` as typed, on dead letters written as a dispatcher would."""

from __future__ import annotations

import json

import pytest

from streams.adapters.client import REPLAY_HEADER
from streams.settings import Settings
from streams.wire import Codec, Task
from tests.adapters.test_client import end_offsets, read_topics
from tests.adapters.test_dlq import Letters, write_dead_letters
from tests.e2e.test_submit_cli import taskd


@pytest.fixture
def letters(topics: Settings) -> Letters:
    return write_dead_letters(topics)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_list_shows_every_dead_letter_in_a_table(topics: Settings, letters: Letters) -> None:
    result = taskd(topics, "dlq", "list")
    assert result.returncode == 0, result.stderr
    for task_id in ("max-a", "max-b", "max-c", "exp-new", "exp-old", "fail-a"):
        assert task_id in result.stdout
    for header in ("task_id", "type", "priority", "tenant", "reason", "attempts", "dead_at"):
        assert header in result.stdout
    assert "(5 raw bytes)" in result.stdout and "MALFORMED" in result.stdout
    assert "undecodable" in result.stdout
    assert "2020-09-13T12:26:40.000Z" in result.stdout  # the old one's dead_at
    assert result.stdout.strip().splitlines()[-1] == "8 of 8 dead letter(s) shown"


def test_list_json_and_its_filters(topics: Settings, letters: Letters) -> None:
    everything = _json_lines(taskd(topics, "dlq", "list", "--json").stdout)
    assert len(everything) == 8
    assert [row["undecodable"] for row in everything].count(True) == 1
    first = everything[0]  # oldest first
    assert (first["task_id"], first["reason"], first["dead_at"]) == (
        "exp-old",
        "EXPIRED",
        letters.expired_old.dead_at,
    )

    expired = _json_lines(taskd(topics, "dlq", "list", "--json", "--reason", "expired").stdout)
    assert [row["task_id"] for row in expired] == ["exp-old", "exp-new"]

    recent = taskd(topics, "dlq", "list", "--json", "--reason", "EXPIRED", "--since", "1h")
    assert [row["task_id"] for row in _json_lines(recent.stdout)] == ["exp-new"]

    since_iso = taskd(topics, "dlq", "list", "--json", "--since", "2021-01-01T00:00:00Z")
    assert len(_json_lines(since_iso.stdout)) == 7

    limited = _json_lines(taskd(topics, "dlq", "list", "--json", "--limit", "2").stdout)
    assert [row["task_id"] for row in limited] == ["exp-old", "max-a"]


def test_a_bad_since_is_a_usage_error(topics: Settings) -> None:
    result = taskd(topics, "dlq", "list", "--since", "yesterday")
    assert result.returncode == 2
    assert "--since" in result.stderr and "ISO-8601" in result.stderr


def test_replay_max_attempts_puts_exactly_those_tasks_back(
    topics: Settings, letters: Letters
) -> None:
    result = taskd(topics, "dlq", "replay", "--reason", "MAX_ATTEMPTS")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "replayed 3 task(s)"
    records = read_topics(topics, topics.topics.all_tasks())
    codec = Codec()
    decoded = [(record, codec.decode(record.value, Task)) for record in records]
    sent = {task.task_id: (record, task) for record, task in decoded}
    assert len(records) == 3 and set(sent) == {"max-a", "max-b", "max-c"}
    for letter in letters.max_attempts:
        assert letter.task is not None
        record, task = sent[letter.task.task_id]
        count = "2" if task.task_id == "max-c" else "1"
        assert record.topic == topics.topics.tasks(letter.task.priority)
        assert task.attempt == 0 and dict(task.headers)[REPLAY_HEADER] == count
        assert record.headers == {REPLAY_HEADER: count.encode()}
        assert (task.type, task.tenant, task.payload) == ("resize", "acme", b"{}")


def test_replay_everything_skips_what_has_no_task_and_says_so(
    topics: Settings, letters: Letters
) -> None:
    result = taskd(topics, "dlq", "replay")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "1 malformed records cannot be replayed; see taskd dlq list" in lines
    assert "1 undecodable records cannot be replayed; see taskd dlq list" in lines
    assert lines[-1] == "replayed 6 task(s)"
    assert len(read_topics(topics, topics.topics.all_tasks())) == 6


def test_dry_run_sends_nothing(topics: Settings, letters: Letters) -> None:
    result = taskd(topics, "dlq", "replay", "--reason", "max_attempts", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would replay max-c (replay 2)" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "would replay 3 task(s); nothing sent (--dry-run)"
    )
    assert set(end_offsets(topics, topics.topics.all_tasks()).values()) == {0}


def test_replay_help_says_it_is_not_idempotent(settings: Settings) -> None:
    result = taskd(settings, "dlq", "replay", "--help")
    assert result.returncode == 0
    assert "NOT idempotent" in result.stdout
