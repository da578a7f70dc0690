"""``taskd`` run as an operator runs it, for the end-to-end tests: a free port for its views,
and the command in the background until the test is done with it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TASKD = Path(sys.executable).parent / "taskd"
STOP_WAIT_S = 60.0


def free_port() -> int:
    """A port nothing listens on now (for a dispatcher's views)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """``taskd ARGS`` with ``env``, stopped with SIGTERM (then SIGKILL) at the end; its stderr
    is kept for the test to read."""
    process = subprocess.Popen(
        [str(TASKD), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=STOP_WAIT_S)
