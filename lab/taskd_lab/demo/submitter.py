"""Submits a workload through ``TaskClient`` in a thread, paced to its arrival times."""

from __future__ import annotations

import contextlib
import threading
import time

from streams.adapters.client import TaskClient
from streams.errors import DeliveryError, TaskdError
from streams.settings import Settings
from taskd_lab.demo.observe import Observer
from taskd_lab.demo.workload import Workload

_FLUSH_S = 60.0
_STOPPED_FLUSH_S = 3.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Submitter:
    """Sends task ``i`` at ``workload.at_ms(i)`` after ``start``; tells the observer first."""

    def __init__(self, settings: Settings, workload: Workload, observer: Observer) -> None:
        self._settings = settings
        self._workload = workload
        self._observer = observer
        self._stop = threading.Event()
        self.finished = threading.Event()
        self.sent = 0
        self.start_ms = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-submitter", daemon=True)

    def start(self) -> None:
        self.start_ms = now_ms()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(_FLUSH_S + 5)

    def check(self) -> None:
        """Raise the thread's error, if it failed."""
        if self._error is not None:
            raise TaskdError(f"submitting the tasks failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            client = TaskClient(self._settings)
            try:
                self._pace(client)
                if not self._stop.is_set():
                    client.flush(_FLUSH_S)
            finally:
                with contextlib.suppress(DeliveryError):  # stopped early: leftovers don't matter
                    client.close(_STOPPED_FLUSH_S)
        except Exception as error:  # surfaced to the main thread by check()
            self._error = error
        finally:
            self.finished.set()

    def _pace(self, client: TaskClient) -> None:
        started = time.monotonic()
        workload, count = self._workload, len(self._workload.arrivals)
        while self.sent < count and not self._stop.is_set():
            elapsed_ms = (time.monotonic() - started) * 1000
            while self.sent < count and workload.at_ms(self.sent) <= elapsed_ms:
                task = workload.task(self.sent, now_ms())
                self._observer.submitted(task)
                client.submit(task)
                self.sent += 1
            time.sleep(0.005)
