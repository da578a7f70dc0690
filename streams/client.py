"""Submit tasks to Task Distributor from Python.

    from streams.client import TaskClient, load_settings

    with TaskClient(load_settings()) as client:          # leaving the block flushes
        client.submit_new(type="resize", priority=1, payload=b'{"w": 64}', tenant="acme")
        report = client.submit_many(tasks)               # waits for the broker's confirmations
        client.submit_and_confirm(urgent_task)           # one task, delivery confirmed

Tasks go to the topic of their priority (``<prefix>tasks.p<priority>``), keyed by their affinity
key or else their task id, with an idempotent producer (acks=all).
"""

from streams.adapters.client import (
    DEFAULT_PRODUCER_CONFIG,
    ProgressCallback,
    SubmitReport,
    TaskClient,
    replay_count,
    task_json,
)
from streams.core.model import REPLAY_HEADER
from streams.errors import DeliveryError, EncodeError, KafkaError, TaskdError
from streams.settings import Settings, load_settings
from streams.wire import Task, TaskOptions

__all__ = [
    "DEFAULT_PRODUCER_CONFIG",
    "REPLAY_HEADER",
    "DeliveryError",
    "EncodeError",
    "KafkaError",
    "ProgressCallback",
    "Settings",
    "SubmitReport",
    "Task",
    "TaskClient",
    "TaskOptions",
    "TaskdError",
    "load_settings",
    "replay_count",
    "task_json",
]
