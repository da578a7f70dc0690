"""The child-process manager of ``taskd demo`` and ``taskd bench`` (``taskd_lab.procs``) with
real processes: per-child environments, logs, early deaths, and stops that end whole groups."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from taskd_lab.procs import ChildError, Children, interrupts_as_keyboard

PY = sys.executable

# A child that starts a grandchild in its own process group; both ignore SIGTERM.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print("grandchild", grandchild.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int, within_s: float = 5.0) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped by init counts as gone)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_each_child_gets_the_common_and_its_own_environment(tmp_path: Path) -> None:
    show = "import os, time; print('env', os.environ['BASE'], os.environ['OWN'], flush=True); "
    with Children(tmp_path, {**os.environ, "BASE": "b", "OWN": "none"}) as children:
        one = children.start("one", [PY, "-c", show + "time.sleep(600)"], {"OWN": "1"})
        two = children.start("two", [PY, "-c", show + "time.sleep(600)"], {"OWN": "2"})
        children.wait_for_logs({one: "env b 1", two: "env b 2"}, 30)
        assert children["two"] is two
        assert (tmp_path / "one.log").read_text().strip() == "env b 1"
    assert not one.alive() and not two.alive()


def test_stop_all_kills_the_whole_group_even_when_sigterm_is_ignored(tmp_path: Path) -> None:
    with Children(tmp_path, dict(os.environ), stop_wait_s=0.5) as children:
        child = children.start("stubborn", [PY, "-c", STUBBORN])
        child.wait_for_log("grandchild ", 30)
        grandchild = int(child.log_text().split()[1])
        started = time.monotonic()
    assert time.monotonic() - started < 10
    assert child.process.returncode == -signal.SIGKILL
    assert _gone(grandchild)


def test_a_child_that_dies_early_is_a_clear_error(tmp_path: Path) -> None:
    with Children(tmp_path, dict(os.environ)) as children:
        early = children.start("early", [PY, "-c", "print('boom'); raise SystemExit(3)"])
        with pytest.raises(ChildError, match=r"early exited with status 3:\nboom"):
            early.wait_for_log("never", 30)
        with pytest.raises(ChildError, match="early exited with status 3"):
            children.check_alive()


def test_a_waiting_child_that_is_silent_times_out_naming_it(tmp_path: Path) -> None:
    with Children(tmp_path, dict(os.environ)) as children:
        quiet = children.start(
            "quiet", [PY, "-c", "import time; print('hello', flush=True); time.sleep(600)"]
        )
        quiet.wait_for_log("hello", 30)
        with pytest.raises(ChildError, match=r"quiet: no 'ready' within 0.5 s.*\nhello"):
            children.wait_for_logs({quiet: "ready"}, 0.5)


def test_a_killed_child_is_no_error(tmp_path: Path) -> None:
    with Children(tmp_path, dict(os.environ)) as children:
        victim = children.start("victim", [PY, "-c", "import time; time.sleep(600)"])
        children["victim"].kill()
        victim.process.wait(10)
        children.check_alive()
        assert victim.process.returncode == -signal.SIGKILL


def test_sigterm_raises_keyboard_interrupt_meanwhile() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), interrupts_as_keyboard():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == previous
