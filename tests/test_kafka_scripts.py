"""scripts/kafka-start|stop|status as a user runs them: clear errors, idempotent start.

Each test runs the scripts with its own run directory and free ports, so the session broker
is never touched.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKD_BOOTSTRAP_SERVERS"}
    env["TASKD_KAFKA_RUN_DIR"] = str(tmp_path / "run")
    env["TASKD_KAFKA_PORT"] = str(_free_port())
    env["TASKD_KAFKA_CONTROLLER_PORT"] = str(_free_port())
    env["TASKD_KAFKA_HEAP"] = "256m"
    return env


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / script)], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
def second_broker(broker_env: dict[str, str]) -> Iterator[dict[str, str]]:
    yield broker_env
    _run("kafka-stop", broker_env)


def test_start_status_restart_stop(second_broker: dict[str, str]) -> None:
    started = _run("kafka-start", second_broker)
    assert started.returncode == 0, started.stderr
    assert "running" in started.stdout
    status = _run("kafka-status", second_broker)
    assert status.returncode == 0 and "answering" in status.stdout
    again = _run("kafka-start", second_broker)
    assert again.returncode == 0 and "already running" in again.stdout
    stopped = _run("kafka-stop", second_broker)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert _run("kafka-status", second_broker).returncode == 1
    restarted = _run("kafka-start", second_broker)  # formatted storage is reused
    assert restarted.returncode == 0, restarted.stderr


def test_port_taken_by_another_program(broker_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(broker_env["TASKD_KAFKA_PORT"])))
        squatter.listen()
        result = _run("kafka-start", broker_env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "taken by another program" in lines[0]


def test_missing_java_is_one_clear_line(broker_env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    for tool in ("sh", "mvn"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    broker_env["PATH"] = str(bin_dir)
    result = _run("kafka-start", broker_env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "`java` is not on PATH" in lines[0]


def test_failed_download_is_one_clear_line(broker_env: dict[str, str]) -> None:
    broker_env["TASKD_KAFKA_VERSION"] = "0.0.0-no-such-version"
    result = _run("kafka-start", broker_env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not download the Kafka jars" in lines[0]


def test_external_broker_starts_nothing(broker_env: dict[str, str]) -> None:
    broker_env["TASKD_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    result = _run("kafka-start", broker_env)
    assert result.returncode == 0 and "nothing started" in result.stdout
    assert not Path(broker_env["TASKD_KAFKA_RUN_DIR"], "broker.pid").exists()


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool takes '-t -x...' for a missing argument: one id in 64 would fail."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "kafka_broker.py"
    spec = importlib.util.spec_from_file_location("kafka_broker_under_test", path)
    assert spec is not None and spec.loader is not None
    broker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broker)
    dashed = uuid.UUID(bytes=b"\xfb" + bytes(15))  # base64 of 0xfb... starts with '-'
    draws = iter([dashed, uuid.UUID(int=1)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    assert broker.base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    assert broker.new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAQ"
