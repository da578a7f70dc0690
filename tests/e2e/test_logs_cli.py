"""The logs an operator reads, from ``taskd agent`` and ``taskd dispatcher`` run as processes
against the broker: a handler's failures with their tracebacks, rate-limited; an agent going
down in the dispatcher's log; JSON lines that parse; never a terminal escape sequence."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from streams.adapters.worker.failures import FAILURE_BURST
from streams.client import TaskClient
from streams.settings import Settings, child_environment
from streams.wire import AssignmentBatch, Task, TaskStatus
from streams.worker import FatalError
from tests.adapters.test_worker_support import WAIT_S, assignment, dispatch, read, read_results

TASKD = "import sys\nfrom streams.cli.main import main\nsys.argv[0] = 'taskd'\nmain()\n"
ROOT = Path(__file__).resolve().parents[2]
HANDLER = "tests.e2e.test_logs_cli:explode"
ESCAPE = "\x1b"


def explode(task: Task) -> None:
    """The handler of these tests: fails every task, in colour (a message holding escapes)."""
    if task.type == "fatal":
        raise FatalError(f"{ESCAPE}[31mdisk on fire{ESCAPE}[0m")
    raise ValueError(f"{ESCAPE}[31mno such image{ESCAPE}[0m {task.task_id}")


def _env(settings: Settings) -> dict[str, str]:
    return child_environment(settings.model_copy(update={"agent_metrics_port": 0}))


@contextmanager
def _taskd(
    settings: Settings, *args: str, stderr: IO[bytes] | int
) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", TASKD, *args],
        env=_env(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=WAIT_S)


def _ready_epoch(agent: subprocess.Popen[str]) -> int:
    """The claim epoch of the agent's ready line (its first line on stdout)."""
    assert agent.stdout is not None
    readable, _, _ = select.select([agent.stdout], [], [], WAIT_S)
    assert readable, f"the agent printed nothing within {WAIT_S} s"
    line = agent.stdout.readline()
    assert " ready: " in line, line
    return int(line.split(" epoch ")[1].split()[0])


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, err
    return out, err or ""


def test_a_failing_handler_is_logged_with_its_traceback_rate_limited_in_json(
    topics: Settings,
) -> None:
    resize = [assignment(epoch=1, task_type="resize", task_id=f"r{i}") for i in range(12)]
    fatal = [assignment(epoch=1, task_type="fatal", task_id=f"f{i}") for i in range(2)]
    args = ("agent", "--id", "logs-json", "--capacity", "2", "--handler", HANDLER)
    with _taskd(topics, *args, "--log-format", "json", stderr=subprocess.PIPE) as agent:
        assert _ready_epoch(agent) == 1
        dispatch(topics, 0, resize + fatal)
        statuses = [result.status for _, result in read_results(topics, 14)]
        out, err = _stop(agent)
    assert statuses.count(TaskStatus.RETRYABLE) == 12 and statuses.count(TaskStatus.FAILED) == 2
    assert ESCAPE not in err and ESCAPE not in out
    entries = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    failures = [e for e in entries if e["logger"] == "streams.adapters.worker.failures"]
    in_full = [e for e in failures if "task_id" in e]
    retryable = [e for e in in_full if e["task_type"] == "resize"]
    assert len(retryable) == FAILURE_BURST  # the first ones per task type and error, in full
    first = retryable[0]
    assert first["level"] == "WARNING"
    assert (first["agent_id"], first["attempt"], first["max_attempts"], first["status"]) == (
        "logs-json",
        1,
        3,
        "RETRYABLE",
    )
    assert first["message"] == (
        f"agent logs-json: task {first['task_id']} (type resize) failed on attempt 1 of 3, "
        f"retryable: the task will be retried: ValueError: {ESCAPE}[31mno such image{ESCAPE}[0m "
        f"{first['task_id']}"
    )
    assert first["exception"].startswith("Traceback (most recent call last):")
    assert ", in explode\n" in first["exception"]
    fatal_entries = [e for e in in_full if e["task_type"] == "fatal"]
    assert [(e["level"], e["status"]) for e in fatal_entries] == [("ERROR", "FAILED")] * 2
    assert "FatalError: " in fatal_entries[0]["exception"]
    summaries = [e for e in failures if "suppressed" in e]
    assert len(summaries) == 1, summaries  # written when the agent stopped
    assert summaries[0]["level"] == "WARNING"
    assert summaries[0]["suppressed"] == 12 - FAILURE_BURST
    assert summaries[0]["message"].startswith(
        f"handler failures of type resize (ValueError): suppressed {12 - FAILURE_BURST} more "
    )


def test_the_text_log_shows_the_traceback_and_no_escape_sequence(topics: Settings) -> None:
    args = ("agent", "--id", "logs-text", "--capacity", "1", "--handler", HANDLER)
    with _taskd(topics, *args, stderr=subprocess.PIPE) as agent:
        epoch = _ready_epoch(agent)
        dispatch(topics, 0, [assignment(epoch=epoch, task_type="resize", task_id="t-text")])
        read_results(topics, 1)
        _, err = _stop(agent)
    assert ESCAPE not in err
    lines = err.splitlines()
    head = next(i for i, line in enumerate(lines) if "task t-text" in line)
    assert lines[head].split(" ", 2)[2] == (
        "WARNING streams.adapters.worker.failures agent logs-text: task t-text (type resize) "
        "failed on attempt 1 of 3, retryable: the task will be retried: "
        "ValueError: \\x1b[31mno such image\\x1b[0m t-text"
    )
    assert lines[head + 1] == "Traceback (most recent call last):"
    assert any(", in explode" in line for line in lines[head:])
    assert "ValueError: \\x1b[31mno such image\\x1b[0m t-text" in lines[head + 2 :]


def _entries(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON log (one still being written is left for the next read)."""
    *complete, _ = path.read_text().split("\n")
    return [json.loads(line) for line in complete]


def _until(path: Path, found: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 2 * WAIT_S
    while True:
        match = next((entry for entry in _entries(path) if found(entry)), None)
        if match is not None:
            return match
        assert time.monotonic() < deadline, (
            f"no {what} in the dispatcher's log:\n" + (path.read_text()[-3000:])
        )
        time.sleep(0.1)


def test_the_dispatcher_logs_an_agent_going_down_in_json_lines(
    topics: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "dispatcher.log"
    timings = ["--heartbeat-ms", "300", "--suspect-after-ms", "1500", "--down-after-ms", "3000"]
    agent_args = ("agent", "--id", "logs-down", "--capacity", "1", "--heartbeat-ms", "300")
    with (
        log.open("wb") as sink,
        _taskd(topics, "dispatcher", "--no-web", *timings, "--log-format", "json", stderr=sink),
        _taskd(
            topics, *agent_args, "--handler", "streams.examples:work", stderr=subprocess.DEVNULL
        ) as agent,
    ):
        _until(log, lambda e: e["message"].startswith("dispatcher ready"), "ready line")
        joined = _until(log, lambda e: e.get("transition") == "joined", "joined agent")
        with TaskClient(topics) as client:
            client.submit_new(type="resize", priority=1, payload=b'{"work_ms": 60000}')
        read(topics, topics.topics.dispatch, AssignmentBatch, count=1)
        agent.send_signal(signal.SIGKILL)
        suspect = _until(log, lambda e: e.get("transition") == "suspect", "suspect agent")
        down = _until(log, lambda e: e.get("transition") == "down", "agent down")
    assert joined["level"] == "INFO" and joined["agent_id"] == "logs-down"
    assert (
        joined["message"] == "agent logs-down joined: claim epoch 1, capacity 1, skills -, zone -"
    )
    assert suspect["level"] == "WARNING"
    assert (down["level"], down["agent_id"], down["state"]) == ("WARNING", "logs-down", "DOWN")
    assert down["message"] == (
        "agent logs-down down: silent for more than 3000 ms; its 1 task(s) go back to the queue"
    )
    text = log.read_text()
    assert ESCAPE not in text
    entries = _entries(log)  # every line is one JSON object
    messages = [entry["message"] for entry in entries]
    assert any(m.startswith("state restored for shards [0, 1] in ") for m in messages)
    assert "rebalance: shards [0, 1] assigned; this instance owns [0, 1]" in messages
    assert messages[-1] == "dispatcher stopped"


def test_an_error_line_into_a_file_has_no_escape_even_with_force_color(topics: Settings) -> None:
    env = {**_env(topics), "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", TASKD, "dispatcher", "--no-web", "--strategy", "nope"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 2  # a usage error
    assert "'nope' is not one of" in done.stderr
    assert ESCAPE not in done.stderr + done.stdout
