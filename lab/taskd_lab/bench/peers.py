"""The peers of ``taskd bench``: the same no-op workload through Celery 5 and Dramatiq on Redis.

For each peer: a fresh Debian ``redis-server`` on 127.0.0.1 (no persistence; fetched without
root by ``scripts/redis_server.py``), its workers as child processes with ``concurrency`` tasks
in flight in total, and a submitter process using the peer's own client API. Configurations,
kept at each framework's defaults so that neither is tuned against the other:

* Celery: ``celery worker --pool prefork -c N`` (prefetch multiplier 4, ack on receipt), with
  gossip, mingle and heartbeat off (cluster chatter that only slows a one-worker start);
* Dramatiq: ``dramatiq -p N -t 1``, the same N single-task OS processes as Celery's prefork.

Neither uses a result backend: each task records its own finish, ``(seq, sent_ns, done_ns)``
into a Redis list, which the bench reads back (``time.time_ns()`` on one machine). Measured:

* throughput: ``tasks`` tasks enqueued flat out, after a warm-up; tasks / (last done - first
  sent), i.e. enqueue to completion end to end, producer and workers sharing the machine;
* latency: an open-loop submitter at fixed rates (by default 25%, 50% and 90% of the peer's own
  throughput), each task stamped with its scheduled send time; e2e = done - scheduled.

Every child runs in its own process group and is stopped in ``finally`` (Ctrl-C too); a phase
that makes no progress for a while gives up with :class:`BenchStalled`.

Standalone: ``python -m taskd_lab.bench.peers [--tasks N] [--concurrency N] [--rates R,R]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from streams.errors import ConfigError, TaskdError
from taskd_lab import ROOT

REDIS_SCRIPT = ROOT / "scripts" / "redis_server.py"
URL_ENV = "TASKD_BENCH_REDIS_URL"
DEFAULT_RATE_FRACTIONS = (0.25, 0.5, 0.9)
WARMUP_TASKS = 50
LATENCY_WINDOW_S = 10.0  # a paced run lasts about this long (bounded by ``tasks``)
MIN_LATENCY_TASKS = 50
START_TIMEOUT_S = 90.0  # workers importing their framework on a busy 2-core machine
STALL_TIMEOUT_S = 30.0  # no new completion for this long: the run gives up
STOP_GRACE_S = 10.0
POLL_S = 0.05


class BenchUnavailable(TaskdError):  # noqa: N818 (the name the CLI agreed on)
    """Redis, Celery or Dramatiq cannot be had or run here; the message says which and why."""


class BenchStalled(BenchUnavailable):
    """A peer stopped completing tasks; its logs are named in the message."""


@dataclass(frozen=True)
class Peer:
    system: str
    distribution: str  # the PyPI name, for its version

    def worker_command(self, concurrency: int) -> list[str]:
        app = f"taskd_lab.bench.peer_tasks.{self.system}_app"
        if self.system == "celery":
            return [
                sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "prefork",
                "-c", str(concurrency), "--loglevel", "WARNING", "-n", "taskd-bench@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]  # fmt: skip
        return [
            sys.executable, "-m", "dramatiq", app, "-p", str(concurrency), "-t", "1",
            "--worker-shutdown-timeout", str(int(STOP_GRACE_S * 1000)),
        ]  # fmt: skip


PEERS = (Peer("celery", "celery"), Peer("dramatiq", "dramatiq"))


# --- public API -------------------------------------------------------------------------------


def run_peers(
    *, tasks: int, concurrency: int, rates: list[float] | None, work_dir: Path
) -> list[dict[str, object]]:
    """Measure every peer in turn; one result dict per system (see the module docstring)."""
    _validate(tasks, concurrency, rates)
    redis_script = _load_redis_script()
    for peer in PEERS:
        _require_module(peer.distribution)
    _require_module("redis")
    work_dir.mkdir(parents=True, exist_ok=True)
    return [
        _run_peer(peer, redis_script, tasks, concurrency, rates, work_dir / peer.system)
        for peer in PEERS
    ]


def _validate(tasks: int, concurrency: int, rates: list[float] | None) -> None:
    if tasks < 1 or concurrency < 1:
        raise ConfigError(f"tasks and concurrency must be >= 1 (got {tasks}, {concurrency})")
    if rates is not None and (not rates or any(not rate > 0 for rate in rates)):
        raise ConfigError(f"rates must be positive tasks/s (got {rates})")


def _load_redis_script() -> ModuleType:
    """scripts/redis_server.py is stdlib-only and lives outside the package: load it by path."""
    spec = importlib.util.spec_from_file_location("taskd_redis_server", REDIS_SCRIPT)
    if spec is None or spec.loader is None or not REDIS_SCRIPT.exists():
        raise BenchUnavailable(f"{REDIS_SCRIPT} is missing: run the bench from a checkout")
    if spec.name in sys.modules:
        return sys.modules[spec.name]
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _require_module(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise BenchUnavailable(
            f"`{name}` is not installed: `pip install -e ./lab` (make setup) brings the peers"
        )


# --- one peer ---------------------------------------------------------------------------------


@dataclass
class Run:
    """A peer's running setup: where to log, how to reach Redis, the worker to watch."""

    peer: Peer
    url: str
    client: Any  # redis.Redis
    worker: subprocess.Popen[bytes]
    run_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, URL_ENV: self.url}


def _run_peer(
    peer: Peer,
    redis_script: ModuleType,
    tasks: int,
    concurrency: int,
    rates: list[float] | None,
    run_dir: Path,
) -> dict[str, object]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (  # the worker stops first, then its Redis
        _redis(redis_script, run_dir / "redis") as server,
        _worker(peer, concurrency, server.url, run_dir) as worker,
    ):
        throughput, latency = _measure(peer, server.url, worker, run_dir, tasks, rates)
    return {
        "system": peer.system,
        "version": importlib.metadata.version(peer.distribution),
        "broker": f"redis {server.version}",
        "concurrency": concurrency,
        "tasks": tasks,
        "throughput_tps": round(throughput, 1),
        "latency": latency,
    }


def _measure(
    peer: Peer,
    url: str,
    worker: subprocess.Popen[bytes],
    run_dir: Path,
    tasks: int,
    rates: list[float] | None,
) -> tuple[float, list[dict[str, object]]]:
    import redis

    run = Run(peer, url, redis.Redis.from_url(url), worker, run_dir)
    try:
        _phase(run, "warmup", min(WARMUP_TASKS, tasks), None, START_TIMEOUT_S)
        throughput = _throughput(_phase(run, "throughput", tasks, None, STALL_TIMEOUT_S))
        chosen = rates or [round(f * throughput, 1) for f in DEFAULT_RATE_FRACTIONS]
        return throughput, [_latency(run, rate, tasks) for rate in chosen]
    finally:
        run.client.close()


@contextmanager
def _redis(redis_script: ModuleType, run_dir: Path) -> Iterator[Any]:
    try:
        server = redis_script.start_server(run_dir)
    except (redis_script.RedisError, OSError) as error:
        raise BenchUnavailable(f"no Redis for the peers: {error}") from error
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def _worker(
    peer: Peer, concurrency: int, url: str, run_dir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, URL_ENV: url}
    process = _spawn(peer.worker_command(concurrency), env, run_dir, run_dir / "worker.log")
    try:
        yield process
    finally:
        stop_group(process)


def _spawn(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """A child in its own session and process group: Ctrl-C reaches only us, and we stop it."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def stop_group(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the leader (its pool shuts down cleanly), then SIGKILL whatever is left in the
    group: a prefork child orphaned by a crashed leader, for instance."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(grace_s)


# --- phases -----------------------------------------------------------------------------------


def _latency(run: Run, rate: float, tasks: int) -> dict[str, object]:
    count = min(tasks, max(MIN_LATENCY_TASKS, round(rate * LATENCY_WINDOW_S)))
    done = _phase(run, f"rate-{rate:g}", count, rate, STALL_TIMEOUT_S)
    e2e_ms = sorted((finished - sent) / 1e6 for sent, finished in done)
    return {
        "rate_tps": rate,
        "e2e_p50_ms": round(percentile(e2e_ms, 50), 2),
        "e2e_p99_ms": round(percentile(e2e_ms, 99), 2),
        "completed": len(done),
    }


def _throughput(done: list[tuple[int, int]]) -> float:
    span_ns = max(finished for _, finished in done) - min(sent for sent, _ in done)
    return len(done) / max(span_ns / 1e9, 1e-9)


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest rank on an ascending list."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _phase(
    run: Run, name: str, count: int, rate: float | None, stall_s: float
) -> list[tuple[int, int]]:
    """Submit ``count`` tasks and wait for all of them; return (sent_ns, done_ns) per task."""
    key = f"taskd-bench:{name}"
    command = [
        sys.executable, "-m", "taskd_lab.bench.peer_tasks.produce", run.peer.system,
        "--key", key, "--count", str(count),
    ]  # fmt: skip
    if rate is not None:
        command += ["--rate", str(rate)]
    producer = _spawn(command, run.env, run.run_dir, run.run_dir / "producer.log")
    try:
        _await(run, key, count, producer, stall_s)
    finally:
        stop_group(producer)
    return _completions(run.client, key)


def _await(
    run: Run, key: str, count: int, producer: subprocess.Popen[bytes], stall_s: float
) -> None:
    seen, progress_at = 0, time.monotonic()
    while seen < count:
        _check_alive(run, producer)
        now_seen = int(run.client.llen(key))
        if now_seen > seen:
            seen, progress_at = now_seen, time.monotonic()
        elif time.monotonic() - progress_at > stall_s:
            raise BenchStalled(
                f"{run.peer.system}: {seen}/{count} tasks done and none for {stall_s:.0f} s;"
                f" see {run.run_dir}/worker.log and producer.log"
            )
        time.sleep(POLL_S)


def _check_alive(run: Run, producer: subprocess.Popen[bytes]) -> None:
    logs = f"see {run.run_dir}/worker.log and producer.log"
    if run.worker.poll() is not None:
        raise BenchUnavailable(f"{run.peer.system} worker exited ({run.worker.returncode}); {logs}")
    if producer.poll() not in (None, 0):
        raise BenchUnavailable(
            f"{run.peer.system} submitter failed ({producer.returncode}); {logs}"
        )


def _completions(client: Any, key: str) -> list[tuple[int, int]]:
    """Parse the list; a task delivered twice counts once (its first completion)."""
    by_seq: dict[int, tuple[int, int]] = {}
    for raw in client.lrange(key, 0, -1):
        seq, sent, done = (int(part) for part in raw.split())
        by_seq.setdefault(seq, (sent, done))
    client.delete(key)
    return list(by_seq.values())


# --- standalone -------------------------------------------------------------------------------


def print_table(results: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = results[0] if results else {}
    title = f"Peers on Redis: {first.get('tasks')} no-op tasks, {first.get('concurrency')} workers"
    table = Table(title=title)
    for column in ("system", "broker", "max tasks/s", "at tasks/s", "p50 ms", "p99 ms", "done"):
        table.add_column(column, justify="left" if column in ("system", "broker") else "right")
    for result in results:
        name = f"{result['system']} {result['version']}"
        head = [name, str(result["broker"]), f"{result['throughput_tps']:,.0f}"]
        for row in _rows(result):
            table.add_row(*head, f"{row['rate_tps']:,.0f}", f"{row['e2e_p50_ms']:.1f}",
                          f"{row['e2e_p99_ms']:.1f}", str(row["completed"]))  # fmt: skip
            head = ["", "", ""]
    Console().print(table)


def _rows(result: dict[str, object]) -> list[dict[str, Any]]:
    rows = result["latency"]
    assert isinstance(rows, list)
    return rows


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Celery and Dramatiq on Redis, no-op tasks.")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--rates", default=None, help="comma-separated tasks/s (default: 25/50/90%%)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="logs (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    rates = [float(part) for part in args.rates.split(",")] if args.rates else None
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up as Ctrl-C does
    with tempfile.TemporaryDirectory(prefix="taskd-peers-") as scratch:
        work_dir = args.work_dir or Path(scratch)
        try:
            results = run_peers(
                tasks=args.tasks, concurrency=args.concurrency, rates=rates, work_dir=work_dir
            )
        except TaskdError as error:
            print(f"peers: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("peers: interrupted; workers and Redis stopped", file=sys.stderr)
            return 130
    print_table(results)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
