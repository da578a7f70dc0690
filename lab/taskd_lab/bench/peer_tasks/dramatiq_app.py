"""Dramatiq on Redis with its default middleware (retries, time and age limits, no results).

Run by ``dramatiq taskd_lab.bench.peer_tasks.dramatiq_app``: importing the module sets the broker.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from taskd_lab.bench.peer_tasks import record_done, redis_url

broker = RedisBroker(url=redis_url())  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="taskd_bench_noop")
def noop(key: str, seq: int, sent_ns: int) -> None:
    record_done(key, seq, sent_ns)


def send(key: str, seq: int, sent_ns: int) -> None:
    noop.send(key, seq, sent_ns)
