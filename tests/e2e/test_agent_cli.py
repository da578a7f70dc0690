"""``taskd agent`` as an operator runs it: a subprocess, SIGTERM, its exit status and output."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.wire import (
    AgentHeartbeat,
    AgentRegistration,
    AgentStatus,
    RegistrationStatus,
    TaskStatus,
)
from tests.adapters.test_worker_support import WAIT_S, assignment, dispatch, read, read_results

ROOT = Path(__file__).resolve().parents[2]
# `taskd agent`: registered here when streams.cli.main does not register it (yet).
TASKD = (
    "from streams.cli.main import app, main\n"
    "from streams.cli.agent import agent\n"
    "names = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}\n"
    "if 'agent' not in names:\n"
    "    app.command('agent')(agent)\n"
    "main()\n"
)
READY = re.compile(
    r"^agent (?P<id>\S+) ready: partition (?P<partition>\d+) epoch (?P<epoch>\d+) "
    r"capacity (?P<capacity>\d+) skills (?P<skills>\S+) metrics on (?P<host>\S+):(?P<port>\d+)$"
)


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "TASKD_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TASKD_TOPIC_PREFIX": settings.topic_prefix,
        "TASKD_SHARDS": str(settings.shards),
        "TASKD_DISPATCH_PARTITIONS": str(settings.dispatch_partitions),
        "TASKD_AGENT_METRICS_PORT": "0",
    }


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", TASKD, "agent", *args]


@contextmanager
def _agent(settings: Settings, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        _command(*args),
        env=_env(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=WAIT_S)


def _first_line(process: subprocess.Popen[str]) -> str:
    """The first line the agent prints, waiting at most WAIT_S for it."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], WAIT_S)
    assert readable, f"the agent printed nothing within {WAIT_S} s"
    return process.stdout.readline().strip()


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_S) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_for_metrics(port: int, **wanted: float) -> None:
    deadline = time.monotonic() + WAIT_S
    while any(_metric(port, name) != value for name, value in wanted.items()):
        assert time.monotonic() < deadline, f"metrics never reached {wanted} within {WAIT_S} s"
        time.sleep(0.05)


def test_sigterm_drains_finishes_the_running_task_and_rejects_the_waiting(
    topics: Settings,
) -> None:
    args = ("--id", "cli-1", "--capacity", "1", "--prefetch", "1", "--skills", "gpu, ocr")
    args += ("--zone", "eu")
    with _agent(
        topics, *args, "--handler", "streams.examples:work", "--heartbeat-ms", "200"
    ) as agent:
        ready = READY.match(_first_line(agent))
        assert ready, "the first line is not the ready line"
        assert ready.group("id", "partition", "epoch", "capacity", "skills") == (
            "cli-1",
            "0",
            "1",
            "1",
            "gpu,ocr",
        )
        port = int(ready.group("port"))
        running = assignment(epoch=1, task_id="running", payload=b'{"work_ms": 4000}')
        waiting = assignment(epoch=1, task_id="waiting", reply_partition=1)
        dispatch(topics, 0, [running, waiting])
        _wait_for_metrics(port, taskd_agent_in_flight=1, taskd_agent_prefetched=1)
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=WAIT_S)
        assert agent.returncode == 0, err
        assert out.strip() == "agent cli-1 stopped"
    results = {r.task_id: (p, r) for p, r in read_results(topics, 2)}
    assert results["running"][1].status is TaskStatus.SUCCEEDED
    assert json.loads(results["running"][1].output or b"") == {
        "task_id": "running",
        "worked_ms": 4000.0,
    }
    assert results["waiting"][0] == 1
    assert (results["waiting"][1].status, results["waiting"][1].error) == (
        TaskStatus.REJECTED,
        "agent draining",
    )
    beats = sorted(
        (hb for _, hb in read(topics, topics.topics.heartbeats, AgentHeartbeat, count=3)),
        key=lambda hb: hb.sent_at,
    )
    assert [hb.status for hb in beats][-2:] == [AgentStatus.DRAINING, AgentStatus.STOPPING]
    assert (beats[-1].skills, beats[-1].zone, beats[-1].completed) == (("gpu", "ocr"), "eu", 1)
    assert beats[-1].prefetch == 1
    registry = read(topics, topics.topics.registry, AgentRegistration, count=2)
    assert [r.status for _, r in registry] == [
        RegistrationStatus.ACTIVE,
        RegistrationStatus.RELEASED,
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--capacity", "0", "--handler", "streams.examples:work"],
            "capacity must be >= 1 (got 0)",
        ),
        (["--capacity", "1"], "--handler or --app is required"),
        (
            ["--capacity", "1", "--handler", "streams.examples:work", "--prefetch", "-1"],
            "prefetch must be >= 0 (got -1)",
        ),
        (
            ["--capacity", "1", "--handler", "streams.examples:work", "--cost", "-1"],
            "cost_per_task must be a finite number >= 0 (got -1.0)",
        ),
        (
            ["--capacity", "1", "--handler", "nowhere.mod:work"],
            "cannot import module 'nowhere.mod'",
        ),
        (["--capacity", "1", "--handler", "streams.examples:nope"], "has no function 'nope'"),
        (
            ["--capacity", "1", "--handler", "x=streams.examples:work", "--handler", "x=m:f"],
            "twice",
        ),
    ],
)
def test_bad_arguments_give_one_error_line_and_exit_1(
    settings: Settings, args: list[str], message: str
) -> None:
    done = subprocess.run(
        _command(*args), env=_env(settings), capture_output=True, text=True, timeout=WAIT_S
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line


def test_no_reachable_broker_is_one_error_line_and_exit_1(settings: Settings) -> None:
    env = {**_env(settings), "TASKD_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}"}
    args = ["--capacity", "1", "--handler", "streams.examples:work", "--connect-timeout-ms", "1000"]
    done = subprocess.run(_command(*args), env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert (
        line.startswith("error: no Kafka broker reachable at 127.0.0.1:") and "within 1 s" in line
    )


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports of 127.0.0.1 that are free now."""
    for _ in range(50):
        first = _closed_port()
        if first + count > 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError(f"no {count} consecutive free ports")


def test_a_second_agent_on_the_host_takes_the_next_metrics_port(topics: Settings) -> None:
    port = _free_ports(4)
    env = {**_env(topics), "TASKD_AGENT_METRICS_PORT": str(port)}
    args = ["--capacity", "1", "--handler", "streams.examples:work"]
    first = subprocess.Popen(
        _command("--id", "port-1", *args), env=env, stdout=subprocess.PIPE, text=True
    )
    second: subprocess.Popen[str] | None = None
    try:
        ready_1 = READY.match(_first_line(first))
        assert ready_1 and ready_1.group("host", "port") == ("127.0.0.1", str(port))
        second = subprocess.Popen(
            _command("--id", "port-2", *args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready_2 = READY.match(_first_line(second))
        assert ready_2, "the second agent did not start"
        moved = int(ready_2.group("port"))
        assert port < moved < port + 4
        assert _metric(moved, "taskd_agent_in_flight") == 0
    finally:
        for process in (first, second):
            if process is not None:
                process.send_signal(signal.SIGTERM)
        first.communicate(timeout=WAIT_S)
        _, err = second.communicate(timeout=WAIT_S) if second else ("", "")
    assert second is not None and first.returncode == second.returncode == 0
    (warning,) = [line for line in err.splitlines() if "in use" in line]
    assert f"metrics port {port} is in use, serving metrics on 127.0.0.1:{moved}" in warning
