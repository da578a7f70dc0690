"""Session-wide fixtures: the real Kafka broker and a unique topic prefix per test.

The broker is started by ``scripts/kafka-start`` (or reused when it already runs); with
``TASKD_BOOTSTRAP_SERVERS`` set, that broker is used instead. A test never skips because the
broker is missing: the fixture starts it or fails.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from hypothesis import settings as hypothesis_settings

from streams.adapters.admin import create_topics, delete_topics
from streams.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

# Property tests share 2 cores with the broker and the pipelines under test: a slow example is
# the machine's, not the code's. No per-example deadline (hypothesis' default is 200 ms).
hypothesis_settings.register_profile("taskd", deadline=None)
hypothesis_settings.load_profile("taskd")


@pytest.fixture(scope="session")
def bootstrap_servers() -> str:
    """Bootstrap servers of a running broker: started here when none runs."""
    external = os.environ.get("TASKD_BOOTSTRAP_SERVERS")
    if external:
        return external
    result = subprocess.run(
        [str(ROOT / "scripts" / "kafka-start")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"could not start the Kafka broker: {result.stderr.strip()}")
    port = os.environ.get("TASKD_KAFKA_PORT", "9092")
    return f"127.0.0.1:{port}"


@pytest.fixture
def topic_prefix() -> str:
    """A prefix of its own for each test, so tests run in any order without sharing topics."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(bootstrap_servers: str, topic_prefix: str) -> Settings:
    """Settings for one test: the session broker, a unique prefix, small partition counts."""
    return load_settings(
        bootstrap_servers=bootstrap_servers,
        topic_prefix=topic_prefix,
        shards=2,
        dispatch_partitions=8,
    )


@pytest.fixture
def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_config())


@pytest.fixture
def topics(settings: Settings, admin: AdminClient) -> Iterator[Settings]:
    """The architecture's topics created under the test's prefix, deleted afterwards."""
    create_topics(settings, admin)
    yield settings
    delete_topics(settings, admin)
