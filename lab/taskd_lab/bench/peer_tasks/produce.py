"""The submitter: ``python -m taskd_lab.bench.peer_tasks.produce SYSTEM --key K --count N``.

Enqueues ``count`` no-op tasks through the peer's own client API, flat out or, with ``--rate``,
open loop at a fixed rate. Open loop stamps each task with its *scheduled* send time, so a
producer that falls behind shows up as latency instead of hiding it (no coordinated omission).
Prints one JSON line: how many were sent, over how long, and the worst lag behind schedule.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable

Send = Callable[[str, int, int], None]


def load_send(system: str) -> Send:
    module = importlib.import_module(f"taskd_lab.bench.peer_tasks.{system}_app")
    send: Send = module.send
    return send


def flat_out(send: Send, key: str, count: int) -> int:
    for seq in range(count):
        send(key, seq, time.time_ns())
    return 0


def paced(send: Send, key: str, count: int, rate: float) -> int:
    """Send task ``seq`` at ``start + seq / rate``; return the worst lag in nanoseconds."""
    period_ns = 1e9 / rate
    start_ns = time.time_ns()
    worst = 0
    for seq in range(count):
        due_ns = start_ns + int(seq * period_ns)
        ahead_ns = due_ns - time.time_ns()
        if ahead_ns > 0:
            time.sleep(ahead_ns / 1e9)
        else:
            worst = max(worst, -ahead_ns)
        send(key, seq, due_ns)
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=["celery", "dramatiq"])
    parser.add_argument("--key", required=True, help="the Redis list the tasks record into")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=None, help="tasks/s; flat out if absent")
    args = parser.parse_args(argv)
    send = load_send(args.system)
    began = time.monotonic()
    if args.rate is None:
        lag_ns = flat_out(send, args.key, args.count)
    else:
        lag_ns = paced(send, args.key, args.count, args.rate)
    elapsed = time.monotonic() - began
    print(json.dumps({"sent": args.count, "seconds": elapsed, "worst_lag_ms": lag_ns / 1e6}))


if __name__ == "__main__":
    main()
