"""Child processes of the benchmark: started in their own process group, logged to a file,
stopped (SIGTERM, then SIGKILL) on every way out, and their memory sampled with psutil.

Every child gets its own session (``start_new_session``), so a stop reaches whatever it
spawned too, and a Ctrl-C in the terminal reaches only the benchmark, which then stops its
children in order instead of leaving them half-killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

from streams.errors import TaskdError

BIN = Path(sys.executable).parent
TASKD = str(BIN / "taskd")
STOP_WAIT_S = 15.0
"""How long a child may take to stop on SIGTERM before it is killed."""


class BenchError(TaskdError):
    """A benchmark could not run: a child died, never became ready, or a run timed out."""


@dataclass
class Child:
    """One child process and the file its stdout and stderr go to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

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
        """BenchError with the end of its log when the child has exited."""
        if not self.alive():
            raise BenchError(
                f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}"
            )

    def wait_for_log(self, text: str, timeout_s: float) -> None:
        """Wait until ``text`` appears in the child's log; BenchError past ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_text():
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: no {text!r} within {timeout_s:g} s:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """SIGTERM to its process group, SIGKILL past ``wait_s``; reaps it."""
        if self.alive():
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait_s)
        _signal_group(self.pid, signal.SIGKILL)  # anything it left behind in its group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


@dataclass
class Children:
    """The children of one benchmark section; a context manager that stops all of them."""

    log_dir: Path
    env: Mapping[str, str]
    started: list[Child] = field(default_factory=list)

    def __enter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(self, name: str, argv: Sequence[str]) -> Child:
        """Start ``argv`` with the section's environment, its output to ``<name>.log``."""
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        """Stop every child, the last started first (agents before their dispatcher)."""
        for child in reversed(self.started):
            child.stop()

    def check_alive(self) -> None:
        for child in self.started:
            child.check_alive()


@dataclass
class RssSampler:
    """Samples the resident memory (RSS, with any descendants) of some processes in a
    background thread; ``peak`` per name, and the samples over time."""

    pids: dict[str, int]
    interval_s: float = 0.2
    peak: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def sample(self) -> None:
        now = time.monotonic()
        for name, pid in self.pids.items():
            rss = process_rss(pid)
            if rss is not None:
                self.samples.append((now, name, rss))
                self.peak[name] = max(self.peak.get(name, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


def process_rss(pid: int) -> int | None:
    """RSS in bytes of ``pid`` and its descendants; None when it is gone."""
    try:
        process = psutil.Process(pid)
        total = int(process.memory_info().rss)
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += int(child.memory_info().rss)
        return total
    except psutil.Error:
        return None


def leftover_children() -> list[int]:
    """Pids of this process's living descendants (a test checks none is left)."""
    me = psutil.Process()
    living = []
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                living.append(child.pid)
    return living


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt too, so a terminated benchmark still stops its
    children through the ``finally`` blocks (the main thread only)."""
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
