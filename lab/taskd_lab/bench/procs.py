"""What the benchmark adds to the child processes of :mod:`taskd_lab.procs`: their memory,
sampled with psutil (the ``bench`` extra), and its own error."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Self

import psutil

from streams.errors import TaskdError


class BenchError(TaskdError):
    """A benchmark could not run: a section is unavailable, or a run could not be measured or
    timed out (a child that dies is a :class:`taskd_lab.procs.ChildError`)."""


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
