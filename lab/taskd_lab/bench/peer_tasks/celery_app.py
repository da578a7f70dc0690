"""Celery 5 on Redis, as deployed by default: prefork pool, prefetch multiplier 4, ack on receipt.

Run by ``celery -A taskd_lab.bench.peer_tasks.celery_app worker``. No result backend: the task
records its completion itself (see the package docstring), as the Dramatiq one does.
"""

from __future__ import annotations

from celery import Celery

from taskd_lab.bench.peer_tasks import record_done, redis_url

app = Celery("taskd_bench", broker=redis_url())
app.conf.update(
    broker_connection_retry_on_startup=True,  # the default, said out loud: silences a warning
    task_ignore_result=True,
)


@app.task(name="taskd_bench.noop")  # type: ignore[untyped-decorator]
def noop(key: str, seq: int, sent_ns: int) -> None:
    record_done(key, seq, sent_ns)


def send(key: str, seq: int, sent_ns: int) -> None:
    noop.apply_async((key, seq, sent_ns))
