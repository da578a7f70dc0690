"""Child processes of ``taskd bench`` and ``taskd demo``: each started in a process group of
its own with its own environment, its output logged to a file, and all of them stopped
(SIGTERM, then SIGKILL) on every way out.

Every child gets its own session (``start_new_session``), so a stop reaches whatever it
spawned too, and a Ctrl-C in the terminal reaches only the parent, which then stops its
children itself instead of leaving them half-killed. Readiness is seen in the logs ("dispatcher
ready", "agent X ready").
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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from streams.errors import TaskdError

STOP_WAIT_S = 15.0
"""How long a child may take to stop on SIGTERM before it is killed."""
_POLL_S = 0.1
_STOPS = (signal.SIGINT, signal.SIGTERM)


class ChildError(TaskdError):
    """A child process died, or did not log what it should have in time."""


@dataclass(eq=False)
class Child:
    """One child process and the file its stdout and stderr go to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    killed: bool = False
    """SIGKILLed on purpose (:meth:`kill`): its exit is not an error."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def check_alive(self) -> None:
        """ChildError with the end of its log when the child has exited (unless killed)."""
        if not self.killed and not self.alive():
            raise ChildError(
                f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}"
            )

    def wait_for_log(self, text: str, timeout_s: float) -> None:
        """Wait until ``text`` appears in the child's log; ChildError past ``timeout_s``."""
        _wait_for_logs({self: text}, timeout_s, time.monotonic(), watched=(self,))

    def kill(self) -> None:
        """SIGKILL its process group (a crash: no drain, no goodbye)."""
        self.killed = True
        signal_group(self.pid, signal.SIGKILL)


@dataclass
class Children:
    """The children of one run, each with ``env`` plus its own variables; a context manager
    whose exit stops all of them."""

    log_dir: Path
    env: Mapping[str, str]
    stop_wait_s: float = STOP_WAIT_S
    started: list[Child] = field(default_factory=list)

    def __enter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()

    def __getitem__(self, name: str) -> Child:
        for child in self.started:
            if child.name == name:
                return child
        raise KeyError(name)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """Start ``argv`` with the run's environment and ``env`` over it, its output to
        ``<name>.log``."""
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def check_alive(self) -> None:
        """ChildError when a child not killed on purpose has exited."""
        for child in self.started:
            child.check_alive()

    def wait_for_logs(
        self, lines: Mapping[Child, str], timeout_s: float, since: float | None = None
    ) -> None:
        """Wait until each child's log shows its line, ``timeout_s`` from ``since`` (a
        ``time.monotonic()``; default now); ChildError past it or as soon as any child dies."""
        since = time.monotonic() if since is None else since
        _wait_for_logs(lines, timeout_s, since, watched=self.started)

    def stop_all(self) -> None:
        """SIGTERM every running child (the last started first: agents before their
        dispatcher), SIGKILL whatever is left of their groups after ``stop_wait_s``; a second
        Ctrl-C meanwhile is ignored, so that nothing is left behind."""
        with uninterrupted():
            running = [child for child in reversed(self.started) if child.alive()]
            for child in running:
                signal_group(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_wait_s
            for child in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(max(0.1, deadline - time.monotonic()))
            for child in reversed(self.started):
                signal_group(child.pid, signal.SIGKILL)  # anything it left behind in its group
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(5)


def _wait_for_logs(
    lines: Mapping[Child, str], timeout_s: float, since: float, watched: Iterable[Child]
) -> None:
    pending = dict(lines)
    watched = tuple(watched)
    while True:
        for child in watched:
            child.check_alive()
        for child, text in list(pending.items()):
            if text in child.log_text():
                del pending[child]
        if not pending:
            return
        if time.monotonic() > since + timeout_s:
            missing = "; ".join(f"{child.name}: no {text!r}" for child, text in pending.items())
            first = next(iter(pending))
            raise ChildError(
                f"{missing} within {timeout_s:g} s; the end of {first.log}:\n{first.tail()}"
            )
        time.sleep(_POLL_S)


def signal_group(pid: int, signum: signal.Signals) -> None:
    """Signal the whole group ``pid`` leads; nothing if it is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
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


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt too, so a terminated parent still stops its children
    through the ``finally`` blocks (the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def _raise(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
