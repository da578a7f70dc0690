#!/usr/bin/env python3
"""Fetch, start and stop a throwaway Redis server (127.0.0.1, no persistence) for the benchmarks.

Standard library only, so it runs before the project's virtual environment exists. A
``redis-server`` on PATH is used as it is. Otherwise Debian's own packages are fetched without
root: ``apt-get download redis-server redis-tools libjemalloc2 liblzf1`` (Debian 12 ships the
server binary in redis-tools, as ``redis-check-rdb``, and redis-server holds only the
``redis-server`` symlink to it), unpacked with ``dpkg-deb -x`` into ``.cache/redis/root/`` and run
with ``LD_LIBRARY_PATH`` pointing at the unpacked libraries. Both paths are ignored by git.

``taskd_lab.bench.peers`` imports this file for :func:`start_server` and :class:`RedisServer`.
The command line keeps one server in the background with a pid file in ``.run/redis/``:

  redis_server.py fetch    fetch if missing and print the binary
  redis_server.py start    start on a free port (or TASKD_REDIS_PORT) and print its URL
  redis_server.py stop     stop the server that ``start`` left running

Environment:
  TASKD_REDIS_PORT     port for ``start`` (default: a free one)
  TASKD_REDIS_RUN_DIR  where the log, pid and port files go (default .run/redis)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "redis"
EXTRACTED = CACHE_DIR / "root"
RUN_DIR = Path(os.environ.get("TASKD_REDIS_RUN_DIR") or ROOT / ".run" / "redis").resolve()
PACKAGES = ("redis-server", "redis-tools", "libjemalloc2", "liblzf1")
LIB_DIR = "usr/lib/x86_64-linux-gnu"
START_TIMEOUT_S = 15.0


class RedisError(Exception):
    """One clear line for the user; the script exits non-zero with it."""


# --- the binary ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binary:
    path: Path
    env: dict[str, str]  # the environment to run it with (LD_LIBRARY_PATH for the unpacked one)

    def version(self) -> str:
        result = subprocess.run(
            [str(self.path), "--version"], capture_output=True, text=True, env=self.env, check=False
        )
        found = re.search(r"v=(\S+)", result.stdout)
        if result.returncode != 0 or found is None:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RedisError(f"{self.path} does not run: {detail[0]}")
        return found.group(1)


def binary() -> Binary:
    """redis-server from PATH, else the unpacked Debian one, fetched on first use."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Binary(Path(on_path), dict(os.environ))
    if not (EXTRACTED / ".complete").exists():
        fetch()
    return _extracted_binary(EXTRACTED)


def _extracted_binary(root: Path) -> Binary:
    env = dict(os.environ)
    libs = str(root / LIB_DIR)
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [libs, env.get("LD_LIBRARY_PATH")]))
    return Binary(root / "usr" / "bin" / "redis-server", env)


def fetch() -> None:
    """Download Debian's packages as a normal user and unpack them into the cache."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RedisError(
                f"`{tool}` is not on PATH, so Debian's redis-server cannot be fetched:"
                " install redis-server (or put it on PATH) to run the peers benchmark"
            )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"fetching Debian's {', '.join(PACKAGES)} with apt-get download ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as scratch:
        debs = Path(scratch) / "debs"
        debs.mkdir()
        _download(debs)
        staging = Path(scratch) / "root"
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(staging)], f"unpacking {deb.name}")
        _extracted_binary(staging).version()  # fails clearly on a missing shared library
        (staging / ".complete").write_text(" ".join(PACKAGES) + "\n")
        shutil.rmtree(EXTRACTED, ignore_errors=True)
        try:
            staging.rename(EXTRACTED)  # atomic: a concurrent fetch never sees half a tree
        except OSError:
            if not (EXTRACTED / ".complete").exists():
                raise


def _download(target: Path) -> None:
    """apt-get download with the system's package lists; without root, when those are missing,
    with private lists refreshed into the cache (apt-get update needs no root there)."""
    try:
        _run(["apt-get", "download", *PACKAGES], "apt-get download", cwd=target)
        return
    except RedisError:
        pass
    lists = CACHE_DIR / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    private = [
        "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={CACHE_DIR / 'apt-cache'}",
        "-o", "Debug::NoLocking=1",
    ]  # fmt: skip
    (CACHE_DIR / "apt-cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    _run(["apt-get", *private, "update"], "apt-get update (private lists)")
    _run(["apt-get", *private, "download", *PACKAGES], "apt-get download", cwd=target)


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("E:")]
        detail = (errors or result.stderr.strip().splitlines()[-1:] or ["no output"])[0]
        raise RedisError(f"{what} failed (exit {result.returncode}): {detail}")


# --- a server -----------------------------------------------------------------------------------


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    version: str
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (no persistence, so it exits at once), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_server(run_dir: Path, port: int | None = None) -> RedisServer:
    """Start redis-server on 127.0.0.1 (a free port unless given); return once it answers PING.

    The server is a child in its own session, so a Ctrl-C meant for the caller does not reach
    it: the caller stops it (``RedisServer.stop``) in its own ``finally``.
    """
    exe = binary()
    version = exe.version()
    run_dir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # a free port may be taken between probe and bind: try another
        chosen = port or free_port()
        server = _launch(exe, version, run_dir, chosen)
        if _wait_ready(server):
            return server
        server.stop()
        if port is not None:
            break
    raise RedisError(f"redis-server did not start on 127.0.0.1; see {run_dir / 'redis.log'}")


def _launch(exe: Binary, version: str, run_dir: Path, port: int) -> RedisServer:
    log = run_dir / "redis.log"
    command = [
        str(exe.path), "--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes",
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(run_dir),
        "--logfile", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=exe.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return RedisServer(process, port, version, log)


def _wait_ready(server: RedisServer) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if pings(server.port):
            return True
        if server.process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# --- commands -----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    if "\nState:\tZ" in (proc / "status").read_text():
        return False  # exited, waiting to be reaped
    return b"redis" in (proc / "cmdline").read_bytes()


def cmd_fetch() -> int:
    exe = binary()
    print(f"{exe.path} (Redis {exe.version()})")
    return 0


def cmd_start() -> int:
    pid_file, port_file = RUN_DIR / "redis.pid", RUN_DIR / "redis.port"
    if pid_file.exists() and _pid_alive(int(pid_file.read_text())):
        pid, port = pid_file.read_text().strip(), port_file.read_text().strip()
        print(f"Redis already running (pid {pid}) on redis://127.0.0.1:{port}/0")
        return 0
    raw = os.environ.get("TASKD_REDIS_PORT", "")
    server = start_server(RUN_DIR, int(raw) if raw.isdigit() else None)
    pid_file.write_text(f"{server.process.pid}\n")
    port_file.write_text(f"{server.port}\n")
    print(f"Redis {server.version} running (pid {server.process.pid}) on {server.url}")
    return 0


def cmd_stop() -> int:
    pid_file = RUN_DIR / "redis.pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        print("Redis is not running")
        return 0
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    print(f"Redis stopped (pid {pid})")
    return 0


def main(argv: list[str]) -> int:
    commands = {"fetch": cmd_fetch, "start": cmd_start, "stop": cmd_stop}
    if len(argv) != 2 or argv[1] not in commands:
        print("usage: redis_server.py fetch|start|stop", file=sys.stderr)
        return 2
    try:
        return commands[argv[1]]()
    except RedisError as error:
        print(f"redis-{argv[1]}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
