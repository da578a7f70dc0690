"""``taskd submit`` as a user types it: a subprocess, its exit status, its output, the broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from streams.settings import Settings
from streams.wire import Codec, decode_task
from tests.adapters.test_client import closed_port, read_topics

TASKD = Path(sys.executable).parent / "taskd"
RUN_TIMEOUT_S = 120


def taskd(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``taskd ARGS`` against the test's broker and topic prefix."""
    env = {
        **os.environ,
        "TASKD_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TASKD_TOPIC_PREFIX": settings.topic_prefix,
        "TASKD_SHARDS": str(settings.shards),
        "TASKD_DISPATCH_PARTITIONS": str(settings.dispatch_partitions),
    }
    return subprocess.run(
        [str(TASKD), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _received(settings: Settings) -> dict[str, tuple[str, bytes]]:
    """Task id to (topic, raw value) of every task on the priority topics."""
    records = read_topics(settings, settings.topics.all_tasks())
    codec = Codec()
    by_id = {}
    for record in records:
        task = decode_task(record.value, codec=codec, now_ms=0)
        by_id[task.task_id] = (record.topic, record.value)
    assert len(by_id) == len(records), "a task arrived twice"
    return by_id


def test_submit_from_a_file(topics: Settings, tmp_path: Path) -> None:
    lines = [
        json.dumps({"task_id": f"f-{i}", "type": "resize", "priority": i % 3}) for i in range(40)
    ]
    lines += [json.dumps({"task_id": f"d-{i}", "type": "resize"}) for i in range(5)]  # --priority
    lines.append(json.dumps({"task_id": "typed", "priority": 0, "payload": {"w": 1}}))  # --type
    lines.append(json.dumps({"task_id": "own", "type": "mine", "priority": 1}))
    source = tmp_path / "tasks.jsonl"
    source.write_text("\n".join(lines) + "\n\n")

    result = taskd(topics, "submit", str(source), "--priority", "3", "--type", "thumbnail")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "submitted 47 tasks (0 failed)"
    received = _received(topics)
    assert len(received) == 47
    names = topics.topics
    assert all(received[f"f-{i}"][0] == names.tasks(i % 3) for i in range(40))
    assert all(received[f"d-{i}"][0] == names.tasks(3) for i in range(5))
    typed = decode_task(received["typed"][1], codec=Codec(), now_ms=0)
    assert (typed.type, typed.priority, typed.payload) == ("thumbnail", 0, b'{"w":1}')
    own = decode_task(received["own"][1], codec=Codec(), now_ms=0)
    assert (own.type, received["own"][0]) == ("mine", names.tasks(1))


def test_submit_from_stdin_reports_malformed_lines_by_number(topics: Settings) -> None:
    stdin = "\n".join(
        [
            '{"task_id": "s-1", "type": "a", "priority": 0}',
            '{"task_id": "s-2", "type": "a", "priority": ',  # line 2: broken JSON
            "",
            '{"task_id": "s-4", "type": "a", "priority": 1, "tenant": "acme"}',
            '{"task_id": "s-5", "type": "a", "priority": 9}',  # line 5: no such level
            '{"task_id": "s-6", "type": "a"}',  # line 6: no priority, and no --priority
            '{"task_id": "s-7", "type": "a", "priority": 2}',
        ]
    )

    result = taskd(topics, "submit", "-", stdin=stdin)

    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == "submitted 3 tasks (3 failed)"
    complaints = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [line.split(":")[0] for line in complaints] == ["line 2", "line 5", "line 6"]
    assert "priority: must be in 0..3, got 9" in complaints[1]
    assert "priority: required" in complaints[2]
    assert sorted(_received(topics)) == ["s-1", "s-4", "s-7"]


def test_empty_input_submits_nothing_and_succeeds(topics: Settings) -> None:
    result = taskd(topics, "submit", stdin="\n  \n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no tasks read"


def test_json_encoding_sends_the_json_form(topics: Settings) -> None:
    stdin = '{"task_id": "j-1", "type": "a", "priority": 1, "payload": "hello"}\n'
    result = taskd(topics, "submit", "--json-encoding", stdin=stdin)
    assert result.returncode == 0, result.stderr
    ((topic, raw),) = _received(topics).values()
    assert topic == topics.topics.tasks(1) and json.loads(raw)["payload"] == "hello"


def test_an_unreachable_broker_is_one_line_and_nothing_sent(settings: Settings) -> None:
    address = f"127.0.0.1:{closed_port()}"
    unreachable = settings.model_copy(update={"bootstrap_servers": address})
    stdin = '{"type": "a", "priority": 0}\n{"type": "b", "priority": 1}\n'
    result = taskd(unreachable, "--connect-timeout-ms", "1000", "submit", stdin=stdin)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: no Kafka broker reachable at {address} within 1 s")


def test_a_file_that_cannot_be_read_is_a_usage_error(settings: Settings, tmp_path: Path) -> None:
    result = taskd(settings, "submit", str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert result.stdout == ""
