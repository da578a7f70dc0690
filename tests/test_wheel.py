"""The product as a user gets it: the wheel the Dockerfile builds, installed into a fresh virtual
environment outside the repository, runs compose's commands against the real broker.

No Docker engine runs here, so the image is proven as far as it can be without one: the wheel
is built from exactly the files the Dockerfile copies, installed the way its ``RUN`` line does
(into a new environment, dependencies from the index), and run from a directory outside the
repository with compose's ``command`` lines and ``TASKD_*`` environment (the broker address,
the topic prefix, the ports and bind hosts made this test's own). Tasks submitted then complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.adapters.admin import delete_topics
from streams.settings import load_settings

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent
TASKS = 20
INSTALL_S = 600
"""pip may download the dependencies on a machine whose cache is empty."""
READY_S = 60
DONE_S = 60


def _dockerfile() -> list[list[str]]:
    """The Dockerfile's instructions, each split in words (no continuation lines are used)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def _build_context(into: Path) -> Path:
    """A copy of what the Dockerfile's COPY lines put in its WORKDIR."""
    for words in _dockerfile():
        if words[0] != "COPY":
            continue
        *sources, dest = words[1:]
        target = into / dest.removeprefix("./")
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    return into


def _run(argv: list[str], timeout_s: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, **kwargs)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip install .`` builds in the image, from the image's files alone."""
    assert ["RUN", "pip", "install", "--no-cache-dir", "."] in _dockerfile()
    context = _build_context(tmp_path_factory.mktemp("image"))
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "pip", "wheel", str(context), "--no-deps", "-w", str(dist)],
        INSTALL_S,
    )
    (built,) = dist.glob("task_distributor-*.whl")
    return built


@pytest.fixture(scope="module")
def taskd(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``taskd`` of a new virtual environment (outside the repository) with the wheel in it."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], INSTALL_S)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", str(wheel)], INSTALL_S, env=_clean_env())
    return venv / "bin" / "taskd"


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the repository's: no TASKD_* settings, virtualenv or paths."""
    dropped = ("TASKD_", "PYTHON", "VIRTUAL_ENV", "PYTEST")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**env, **extra}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_env(
    compose: Mapping[str, Any], service: str, bootstrap: str, prefix: str
) -> dict[str, str]:
    """Compose's TASKD_* variables of ``service``, with this test's broker, prefix, ports and
    hosts (compose binds 0.0.0.0 inside its network; here only the loopback is served)."""
    env = {k: str(v) for k, v in compose["services"][service]["environment"].items()}
    env |= {"TASKD_BOOTSTRAP_SERVERS": bootstrap, "TASKD_TOPIC_PREFIX": prefix}
    local = {
        "TASKD_HTTP_HOST": "127.0.0.1",
        "TASKD_HTTP_PORT": str(_free_port()),
        "TASKD_AGENT_METRICS_HOST": "127.0.0.1",
        "TASKD_AGENT_METRICS_PORT": str(_free_port()),
    }
    env |= {name: value for name, value in local.items() if name in env}
    return _clean_env(**env)


def _command(compose: Mapping[str, Any], service: str) -> list[str]:
    """The arguments compose gives ``taskd`` (the image's entry point) for ``service``."""
    command = compose["services"][service]["command"]
    assert isinstance(command, list)
    return [str(word) for word in command]


def test_the_wheel_holds_the_runtime_and_its_schemas_and_nothing_of_the_lab(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {
            name.removeprefix("streams/wire/avsc/"): archive.read(name)
            for name in names
            if name.startswith("streams/wire/avsc/")
        }
    source = ROOT / "schemas"
    written = {str(path.relative_to(source)): path.read_bytes() for path in source.rglob("*.avsc")}
    assert shipped == written
    assert "streams/examples.py" in names and "streams/py.typed" in names
    assert "streams/adapters/dashboard.html" in names  # the dispatcher's page at /
    assert "taskd/__init__.py" in names and "streams/app.py" in names  # import taskd
    assert not [n for n in names if re.match(r"(taskd_lab|streams/(bench|demo|procs))\b", n)]


def test_compose_commands_parse_with_the_installed_taskd(
    taskd: Path, compose: dict[str, Any], tmp_path: Path
) -> None:
    for service in ("topics", "dispatcher", "agent"):
        argv = [str(taskd), *_command(compose, service)]
        _run([*argv, "--help"], READY_S, cwd=tmp_path, env=_clean_env())


def test_demo_and_bench_say_in_one_line_that_they_need_a_checkout(
    taskd: Path, tmp_path: Path
) -> None:
    for command in ("demo", "bench"):
        done = subprocess.run(
            [str(taskd), command],
            capture_output=True,
            text=True,
            timeout=READY_S,
            cwd=tmp_path,
            env=_clean_env(),
        )
        assert done.returncode == 1
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"error: taskd {command} runs from a source checkout"), line


@contextmanager
def _service(argv: list[str], env: dict[str, str], cwd: Path, name: str) -> Iterator[Path]:
    """A long-running ``taskd`` process, its output in ``cwd/name.log``; SIGTERM at the end,
    after which it must exit 0 (a drained agent, a stopped dispatcher)."""
    log = cwd / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=READY_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0, f"{name} exited with {code}:\n{log.read_text()[-3000:]}"


def _wait_for(log: Path, text: str) -> None:
    deadline = time.monotonic() + READY_S
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in {READY_S} s:\n{log.read_text()}"
        time.sleep(0.2)


def _status(taskd: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = _run([str(taskd), "status", "--json"], READY_S, cwd=cwd, env=env)
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def test_compose_services_from_the_wheel_complete_submitted_tasks(
    taskd: Path, compose: dict[str, Any], bootstrap_servers: str, tmp_path: Path
) -> None:
    prefix = f"wheel{uuid.uuid4().hex[:10]}."
    env = {
        service: _service_env(compose, service, bootstrap_servers, prefix)
        for service in ("topics", "dispatcher", "agent")
    }
    try:
        _run([str(taskd), *_command(compose, "topics")], READY_S, cwd=tmp_path, env=env["topics"])
        _run_fleet(taskd, compose, env, tmp_path)
    finally:
        delete_topics(load_settings(bootstrap_servers=bootstrap_servers, topic_prefix=prefix))


def _run_fleet(
    taskd: Path, compose: dict[str, Any], env: dict[str, dict[str, str]], cwd: Path
) -> None:
    dispatcher = [str(taskd), *_command(compose, "dispatcher")]
    agent = [str(taskd), *_command(compose, "agent")]
    with (
        _service(dispatcher, env["dispatcher"], cwd, "dispatcher") as dispatcher_log,
        _service(agent, env["agent"], cwd, "agent") as agent_log,
    ):
        _wait_for(dispatcher_log, "dispatcher ready")
        _wait_for(agent_log, " ready: partition")
        lines = "".join(
            json.dumps({"type": "resize", "priority": i % 4, "payload": {"work_ms": 20}}) + "\n"
            for i in range(TASKS)
        )
        done = _run([str(taskd), "submit", "-"], READY_S, cwd=cwd, env=env["agent"], input=lines)
        assert f"submitted {TASKS} tasks (0 failed)" in done.stdout
        _wait_for_completion(taskd, env["dispatcher"], cwd)


def _wait_for_completion(taskd: Path, env: dict[str, str], cwd: Path) -> None:
    deadline = time.monotonic() + DONE_S
    while True:
        details = _status(taskd, env, cwd)["details"]
        if details["finished"].get("SUCCEEDED") == TASKS:
            assert (details["tasks"], details["completed"]) == (TASKS, TASKS)
            assert sum(details["dead_lettered"].values()) == 0
            return
        assert time.monotonic() < deadline, f"not all {TASKS} tasks done in {DONE_S} s: {details}"
        time.sleep(0.5)
