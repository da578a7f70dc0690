"""``taskd status`` as typed, against a StatusServer serving a real distributor's progress.

The server runs on its own event loop in a background thread, on a free port of 127.0.0.1,
and stops with the test; ``taskd`` runs as a subprocess, as a user would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.adapters.http import StatusServer
from streams.adapters.metrics import DispatcherMetrics
from streams.adapters.status import context_view, progress_view
from streams.settings import load_settings
from tests.adapters.test_metrics_status import NOW_MS, drive

TASKD = Path(sys.executable).parent / "taskd"
RUN_TIMEOUT_S = 60
START_TIMEOUT_S = 10


class ServerThread:
    """A :class:`StatusServer` on its own event loop in a daemon thread, until ``close``."""

    def __init__(self, server: StatusServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(server.start(), self._loop).result(START_TIMEOUT_S)

    def close(self) -> None:
        try:
            stopping = asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop)
            stopping.result(START_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)
            self._loop.close()


@pytest.fixture
def served() -> Iterator[tuple[StatusServer, dict[str, object]]]:
    """A server whose ``/status`` is the scenario's progress; the view it serves."""
    run = drive()
    registry = CollectorRegistry()
    DispatcherMetrics(registry).refresh(run.core, NOW_MS)
    view = progress_view(run.core, NOW_MS, state="distributing")
    server = StatusServer(
        "127.0.0.1",
        0,
        status=lambda: view,
        context=lambda: context_view(run.core, load_settings(), now_ms=NOW_MS),
        registry=registry,
    )
    background = ServerThread(server)
    try:
        yield server, view
    finally:
        background.close()


def taskd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``taskd ARGS`` with no TASKD_* settings but ``env``."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TASKD_")}
    result = subprocess.run(
        [str(TASKD), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert "No such command 'status'" not in result.stderr, (
        "register streams.cli.status:status as `taskd status` in streams/cli/main.py"
    )
    return result


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_json_prints_the_progress_as_served(served: tuple[StatusServer, dict[str, object]]) -> None:
    server, view = served
    result = taskd("status", "--json", "--url", server.url)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == view
    assert json.loads(result.stdout)["progress"] == {
        "tasks_distributed": "4",
        "avg_queue_time": "100ms",
        "load_variance": "11%",
        "deadline_success": "50%",
    }


def test_the_default_url_comes_from_the_settings(
    served: tuple[StatusServer, dict[str, object]],
) -> None:
    server, view = served
    env = {"TASKD_HTTP_HOST": "0.0.0.0", "TASKD_HTTP_PORT": str(server.port)}
    result = taskd("status", "--json", env=env)  # bind-all in the settings: asks loopback

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == view


def test_the_summary_shows_progress_and_details(
    served: tuple[StatusServer, dict[str, object]],
) -> None:
    server, _ = served
    result = taskd("status", "--url", server.url + "/status/")

    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[0] == "task-distributor distributing"
    for line in (
        "tasks distributed 4",
        "avg queue time 100ms",
        "load variance 11%",
        "deadline success 50%",
        "tasks 6 received, 1 completed",
        "dead-lettered 2 (EXPIRED 1, FAILED 1)",
        "queue 1 held, 2 in flight",
        "agents 2 of 2 ready",
        "utilization 93.3%",
        "p99 queue time 100 ms",
    ):
        assert line in lines


def test_an_unreachable_dispatcher_is_one_error_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = taskd("status", "--url", url)

    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: cannot reach the dispatcher at {url}/status: Connection refused"
    )
    assert "is taskd dispatcher running?" in line


def test_a_server_that_is_no_dispatcher_is_one_error_line(
    served: tuple[StatusServer, dict[str, object]],
) -> None:
    server, _ = served
    result = taskd("status", "--url", server.url + "/nowhere")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {server.url}/nowhere/status answered 404 Not Found (is it a taskd dispatcher?)"
    ]


def test_a_url_that_is_not_http_is_a_usage_error() -> None:
    result = taskd("status", "--url", "file:///etc/passwd")

    assert result.returncode == 2
    assert "--url" in result.stderr and "http://" in result.stderr
