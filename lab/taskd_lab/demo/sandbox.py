"""A run's own corner of the broker and the disk: a unique topic prefix with its topics, and a
data dir for the dispatcher's state; both removed afterwards, so two runs never mix."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.adapters.admin import create_topics, delete_groups, delete_topics
from streams.errors import KafkaError, TaskdError
from streams.settings import Settings, load_settings

_PROBE_S = 5.0


def check_broker(settings: Settings) -> None:
    """Raise TaskdError, saying how to start one, when no broker answers."""
    admin = AdminClient({**settings.kafka_config(), "log_level": 0})
    try:
        admin.list_topics(timeout=_PROBE_S)
    except KafkaException as error:
        raise KafkaError(
            f"no Kafka broker answers at {settings.bootstrap_servers} ({error.args[0].str()}). "
            "Start one with `make broker` (or scripts/kafka-start), or point "
            "TASKD_BOOTSTRAP_SERVERS at yours."
        ) from error


@contextmanager
def sandbox(base: Settings, name: str) -> Iterator[Settings]:
    """Settings for one run: topics under a fresh prefix (created, then deleted) and a fresh
    data dir (removed), from ``base``'s broker and partition counts."""
    prefix = f"{base.topic_prefix}demo-{name}-{uuid.uuid4().hex[:8]}."
    data_dir = Path(tempfile.mkdtemp(prefix="taskd-demo-"))
    settings = load_settings(
        **{**base.model_dump(), "topic_prefix": prefix, "data_dir": data_dir},
    )
    try:
        create_topics(settings)
        yield settings
    finally:
        with suppress(TaskdError):  # a cleanup failure must not hide the run's own error
            delete_topics(settings)
            delete_groups(settings)  # the run's consumer groups too
        shutil.rmtree(data_dir, ignore_errors=True)
