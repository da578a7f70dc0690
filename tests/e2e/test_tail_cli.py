"""``taskd tail results|events|dlq`` as typed: the Avro records of a topic as JSON lines, one per
result (a results record holds a batch), filtered by task, and ``--follow`` that keeps going."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time

from streams.settings import Settings
from streams.wire import ResultBatch, TaskResult, TaskStatus
from tests.adapters.test_dlq import write_dead_letters
from tests.adapters.test_worker_support import produce
from tests.e2e.test_submit_cli import TASKD, taskd


def _result(task_id: str, output: bytes | None, status: TaskStatus) -> TaskResult:
    return TaskResult(
        task_id=task_id,
        agent_id="a1",
        attempt=0,
        status=status,
        error=None if status is TaskStatus.SUCCEEDED else "busy",
        started_at=10,
        finished_at=20,
        output=output,
    )


def _task_of(row: dict[str, object]) -> object:
    task = row["task"]
    assert isinstance(task, dict)
    return task["task_id"]


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_results_print_one_json_line_per_result_with_the_output_as_json(topics: Settings) -> None:
    batch = ResultBatch(
        results=(
            _result("t1", b'{"w": 64}', TaskStatus.SUCCEEDED),
            _result("t2", b"\xff\x00", TaskStatus.SUCCEEDED),
            _result("t3", None, TaskStatus.RETRYABLE),
        )
    )
    produce(topics, topics.topics.results, [batch])
    rows = _lines(taskd(topics, "tail", "results").stdout)
    assert [row["task_id"] for row in rows] == ["t1", "t2", "t3"]
    assert rows[0]["output"] == {"w": 64} and rows[0]["status"] == "SUCCEEDED"
    assert rows[1]["output"] == {"base64": "/wA="}
    assert rows[2]["status"] == "RETRYABLE" and rows[2]["error"] == "busy"
    only = _lines(taskd(topics, "tail", "results", "--task", "t3").stdout)
    assert [row["task_id"] for row in only] == ["t3"]


def test_dead_letters_print_with_their_task_and_can_be_followed(topics: Settings) -> None:
    letters = write_dead_letters(topics)
    rows = _lines(taskd(topics, "tail", "dlq").stdout)
    assert len(rows) == len(letters.all) + 1  # and one record that is no dead letter
    assert {"undecodable": True}.items() <= rows[-1].items() or any(
        r.get("undecodable") for r in rows
    )
    failed = _lines(taskd(topics, "tail", "dlq", "--task", "fail-a").stdout)
    assert [(row["reason"], _task_of(row)) for row in failed] == [("FAILED", "fail-a")]

    env = {
        **os.environ,
        "TASKD_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
        "TASKD_TOPIC_PREFIX": topics.topic_prefix,
        "TASKD_SHARDS": str(topics.shards),
    }
    follow = subprocess.Popen(
        [str(TASKD), "tail", "results", "--follow"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        time.sleep(3)  # reading, with nothing there yet
        produce(
            topics,
            topics.topics.results,
            [ResultBatch(results=(_result("late", None, TaskStatus.SUCCEEDED),))],
        )
        assert follow.stdout is not None
        line = follow.stdout.readline()  # blocks until the new record is printed
        assert json.loads(line)["task_id"] == "late"
        assert follow.poll() is None  # still following
    finally:
        follow.terminate()
        follow.communicate(timeout=30)  # reaps it and closes its pipe


def test_an_unknown_topic_is_a_usage_error(topics: Settings) -> None:
    result = taskd(topics, "tail", "tasks")
    assert result.returncode == 2 and "results, replies, events, dlq" in result.stderr


def test_since_prints_only_the_records_written_since_a_time_or_a_duration_back(
    topics: Settings,
) -> None:
    produce(topics, topics.topics.results, [ResultBatch(results=(_ok("before"),))])
    time.sleep(1.0)  # record timestamps are milliseconds: a clear gap between the two
    between = datetime.datetime.now(datetime.UTC)
    time.sleep(1.0)
    produce(topics, topics.topics.results, [ResultBatch(results=(_ok("after"),))])

    def printed(since: str) -> list[object]:
        return [
            row["task_id"]
            for row in _lines(taskd(topics, "tail", "results", "--since", since).stdout)
        ]

    assert printed(between.isoformat()) == ["after"]
    assert printed(between.strftime("%Y-%m-%dT%H:%M:%S.%f")) == ["after"]  # no zone: UTC
    assert printed("1h") == ["before", "after"]
    assert printed("2099-01-01T00:00:00Z") == []


def _ok(task_id: str) -> TaskResult:
    return _result(task_id, None, TaskStatus.SUCCEEDED)


def test_a_since_that_is_no_time_is_a_usage_error(topics: Settings) -> None:
    result = taskd(topics, "tail", "dlq", "--since", "yesterday")
    assert result.returncode == 2
    assert "expected an ISO-8601 time" in result.stderr and "'yesterday'" in result.stderr
