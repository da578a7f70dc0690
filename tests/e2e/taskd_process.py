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
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
TASKD = Path(sys.executable).parent / "taskd"
CLI = "import sys\nfrom streams.cli.main import main\nsys.argv[0] = 'taskd'\nmain()\n"
"""The ``taskd`` command run by this interpreter from the checkout, so that an agent can load
a handler of the tests (``tests.e2e....:function``)."""
STOP_WAIT_S = 60.0


def free_port() -> int:
    """A port nothing listens on now (for a dispatcher's views)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    env: dict[str, str],
    *args: str,
    stderr: IO[str] | int = subprocess.PIPE,
) -> Iterator[subprocess.Popen[str]]:
    """``taskd ARGS`` with ``env`` (stderr kept for the test, or written to ``stderr``),
    stopped with SIGTERM (then SIGKILL) at the end if it still runs."""
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=STOP_WAIT_S)
