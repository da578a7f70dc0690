"""The no-op tasks that ``taskd_lab.bench.peers`` runs through Celery and Dramatiq on Redis.

The workers import ``celery_app`` or ``dramatiq_app`` (never both: each pulls in its own
framework), configured from ``TASKD_BENCH_REDIS_URL``. A task records its own completion, so
both peers are measured the same way, with no result backend: it pushes
``"<seq> <sent_ns> <done_ns>"`` onto the Redis list named in its arguments, and the bench reads
the list back. ``time.time_ns()`` on one machine is the one clock for both ends.
"""

from __future__ import annotations

import os
import time
from typing import Any

URL_ENV = "TASKD_BENCH_REDIS_URL"

_client: Any = None


def redis_url() -> str:
    url = os.environ.get(URL_ENV)
    if not url:
        raise RuntimeError(f"{URL_ENV} is not set: the bench sets it for its workers")
    return url


def record_done(key: str, seq: int, sent_ns: int) -> None:
    """The task's whole work: note when it finished."""
    done_ns = time.time_ns()
    global _client
    if _client is None:  # one connection per worker process, opened after the fork
        import redis

        _client = redis.Redis.from_url(redis_url())
    _client.rpush(key, f"{seq} {sent_ns} {done_ns}")
