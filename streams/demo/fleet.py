"""The demo's fleet: the dispatcher and the agents as real ``taskd`` child processes.

Each process runs in a process group of its own, so a Ctrl-C in the terminal reaches only the
demo, which then stops them itself (SIGTERM, then SIGKILL): nothing it started outlives it.
Their output goes to one log file each, which is also how readiness is seen ("agent X ready",
"dispatcher ready").
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from streams.errors import TaskdError
from streams.settings import Settings, child_environment

READY_S = 120.0
"""How long the dispatcher and the agents may take to be ready (a busy 2-core machine)."""
STOP_S = 20.0
"""How long a SIGTERM'd process may take to drain before it is killed."""
WAVE = 3
"""Agents started at once: agents starting together race for the lowest free dispatch
partition and give up after 5 lost races, so a few at a time always get one."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent of the fleet: its slots, speed, skills, zone, and how flaky it is."""

    agent_id: str
    capacity: int
    speed: float = 1.0
    """Work units per second per slot (the demo handler divides its work time by it)."""
    skills: tuple[str, ...] = ()
    zone: str | None = None
    fail_rate: float = 0.0
    """Probability that an attempt ends RETRYABLE."""

    @property
    def work_rate(self) -> float:
        """Work units per second the agent runs when every slot is busy."""
        return self.capacity * self.speed


@dataclass(frozen=True, slots=True)
class Timings:
    """The dispatcher's timings for the demo: failover a few seconds after a crash."""

    heartbeat_ms: int = 500
    suspect_after_ms: int = 1_500
    down_after_ms: int = 3_000
    lease_ms: int = 600_000
    """Long on purpose: under the push baseline a task may wait minutes in an agent's own
    partition, and a short lease would fail it over while it waits (as the reference does)."""


class Fleet:
    """``taskd dispatcher --strategy S`` and one ``taskd agent`` per spec; a context manager
    whose exit stops every process it started."""

    def __init__(
        self,
        settings: Settings,
        *,
        strategy: str,
        agents: Sequence[AgentSpec],
        log_dir: Path,
        timings: Timings | None = None,
    ) -> None:
        self._settings = settings
        self._strategy = strategy
        self._agents = tuple(agents)
        self._timings = timings or Timings()
        self._log_dir = log_dir
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._killed: set[str] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes.values()]

    def start(self, timeout_s: float = READY_S) -> None:
        """Start the dispatcher and the agents (WAVE at a time); return when all are ready."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        self._spawn("dispatcher", self._dispatcher_args(), {})
        waiting = {"dispatcher": "dispatcher ready"}
        for first in range(0, len(self._agents), WAVE):
            for spec in self._agents[first : first + WAVE]:
                self._spawn(spec.agent_id, _agent_args(spec, self._timings), _agent_env(spec))
                waiting[spec.agent_id] = f"agent {spec.agent_id} ready"
            self._wait_ready(waiting, deadline, keep="dispatcher")
        self._wait_ready(waiting, deadline)

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (a crash: no drain, no goodbye)."""
        self._killed.add(name)
        _signal_group(self._processes[name], signal.SIGKILL)

    def check(self) -> None:
        """Raise TaskdError when a process the demo did not kill has exited."""
        for name, process in self._processes.items():
            code = process.poll()
            if code is not None and name not in self._killed:
                raise TaskdError(f"{name} exited with status {code}:\n{self.log_tail(name)}")

    def stop(self) -> None:
        """SIGTERM every process still running, SIGKILL those not gone within STOP_S; a second
        Ctrl-C meanwhile is ignored, so that nothing is left behind."""
        with _uninterrupted():
            self._stop_all()

    def _stop_all(self) -> None:
        running = [process for process in self._processes.values() if process.poll() is None]
        for process in running:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self._log_path(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _dispatcher_args(self) -> list[str]:
        timings = self._timings
        return [
            "dispatcher",
            "--strategy",
            self._strategy,
            "--heartbeat-ms",
            str(timings.heartbeat_ms),
            "--suspect-after-ms",
            str(timings.suspect_after_ms),
            "--down-after-ms",
            str(timings.down_after_ms),
            "--lease-ms",
            str(timings.lease_ms),
            "--loglevel",
            "info",
        ]

    def _spawn(self, name: str, args: list[str], extra_env: Mapping[str, str]) -> None:
        log = self._logs[name] = self._log_path(name).open("wb")
        self._processes[name] = subprocess.Popen(
            [*taskd_command(), *args],
            env={**child_environment(self._own_ports()), "PYTHONUNBUFFERED": "1", **extra_env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _own_ports(self) -> Settings:
        """The run's settings with ports of the child's own: several agents and dispatchers
        (the demo's and any other) share this host."""
        return self._settings.model_copy(update={"http_port": free_port(), "agent_metrics_port": 0})

    def _wait_ready(self, waiting: dict[str, str], deadline: float, keep: str = "") -> None:
        """Wait until the logs of ``waiting`` (name -> line) show their line (but ``keep``'s)."""
        while set(waiting) - {keep}:
            self.check()
            for name, line in list(waiting.items()):
                if line in self._log_path(name).read_text(errors="replace"):
                    del waiting[name]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(sorted(waiting))
                raise TaskdError(f"not ready in time: {names}; see the logs in {self._log_dir}")
            time.sleep(0.2)

    def _log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"


def taskd_command() -> list[str]:
    """The ``taskd`` next to this Python (the venv's), else this Python running the CLI."""
    script = Path(sys.executable).with_name("taskd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from streams.cli.main import main; main()"]


def free_port() -> int:
    """A TCP port free on this host right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _agent_args(spec: AgentSpec, timings: Timings) -> list[str]:
    args = ["agent", "--id", spec.agent_id, "--capacity", str(spec.capacity)]
    args += ["--handler", "streams.demo:work", "--heartbeat-ms", str(timings.heartbeat_ms)]
    args += ["--weight", f"{spec.work_rate:g}"]
    if spec.skills:
        args += ["--skills", ",".join(spec.skills)]
    if spec.zone:
        args += ["--zone", spec.zone]
    return args


def _agent_env(spec: AgentSpec) -> dict[str, str]:
    return {"TASKD_DEMO_SPEED": f"{spec.speed:g}", "TASKD_DEMO_FAIL_RATE": f"{spec.fail_rate:g}"}


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """SIGINT and SIGTERM ignored meanwhile (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOPS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


_STOPS = (signal.SIGINT, signal.SIGTERM)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Signal the process's whole group (it leads one); nothing if it is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
