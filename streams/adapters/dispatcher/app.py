"""The Faust app of the dispatcher, built from the settings (no environment read by Faust).

The table changelogs are created before the consumer subscribes (``on_first_start``): Faust
declares them itself only once its consumer is already assigned, so on a first start they
would be missing from the assignment and from the metadata the table writes are checked
against (``PartitionsMismatch``).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiokafka
import faust
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.adapters.dispatcher.config import DispatcherConfig
from streams.errors import TopicError
from streams.settings import Settings

FAUST_ENV_PREFIX = "TASKD_FAUST_"
"""Faust reads only variables with this prefix, never the user's plain ``WEB_PORT`` etc."""
TABLES = ("inflight", "ended")
_TIMEOUT_S = 30.0


def app_id(settings: Settings) -> str:
    """The consumer group and the prefix of the table changelogs: ``<prefix>dispatcher``."""
    return f"{settings.topic_prefix}dispatcher"


def changelog_topics(settings: Settings) -> list[str]:
    return [f"{app_id(settings)}-{table}-changelog" for table in TABLES]


FETCH_MAX_WAIT_MS = 10
"""The longest a fetch waits at the broker for data; Faust fixes 1,500 ms. aiokafka leaves
partitions whose records are still being processed out of the fetch under way, so with a long
wait records landing there can sit until that fetch ends. Measured side by side (10,000 no-op
tasks, 4 agents x 16 slots, this machine): 247 tasks/s with 1,500 ms, 316 with 10 ms."""


MAX_POLL_RECORDS = 500
"""Records aiokafka decodes per poll."""


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class DispatcherApp(faust.App):
    """A Faust app that creates its table changelogs before it subscribes."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(app_id(settings), **options)
        self.taskd_settings = settings

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        self.conf.datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
        await super().on_first_start()
        await asyncio.to_thread(create_changelogs, self.taskd_settings)


def state_dir(settings: Settings) -> Path:
    """Where this dispatcher's RocksDB state lives: ``data_dir/<prefix>dispatcher``. Faust
    names its stores by table alone, so two prefixes sharing ``data_dir`` would otherwise share
    (and corrupt) one another's tables."""
    return settings.data_dir / app_id(settings)


def build_app(settings: Settings, config: DispatcherConfig) -> DispatcherApp:
    """A Faust app on the settings' broker, RocksDB state in :func:`state_dir`."""
    return DispatcherApp(
        settings,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="rocksdb://",
        datadir=str(state_dir(settings)),
        topic_partitions=settings.shards,
        topic_replication_factor=settings.replication_factor,
        env_prefix=FAUST_ENV_PREFIX,
        # the dispatcher serves its own views on http_host:http_port (runtime.py)
        web_enabled=False,
        broker_commit_interval=1.0,
        broker_session_timeout=config.session_timeout_ms / 1000,
        broker_heartbeat_interval=config.session_timeout_ms / 10_000,
        # held tasks stay unacked by design: never wait for them at a rebalance or a stop
        stream_wait_empty=False,
        # Faust leaves it unset: aiokafka then decodes a partition's whole fetched buffer at
        # once, ~300 B more per held task at 100K waiting (taskd bench, memory section)
        broker_max_poll_records=MAX_POLL_RECORDS,
        autodiscover=False,
        broker_credentials=credentials(settings),
    )


def credentials(settings: Settings) -> faust.SASLCredentials | None:
    """Faust's SASL credentials from the settings (None for PLAINTEXT); TLS with the system's
    default certificates for SASL_SSL. SSL without SASL is not supported by this adapter yet."""
    if not settings.sasl_username or settings.sasl_password is None:
        return None
    tls = ssl.create_default_context() if settings.security_protocol == "SASL_SSL" else None
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        mechanism=settings.sasl_mechanism,
        ssl_context=tls,
    )


def create_changelogs(settings: Settings) -> None:
    """Create the compacted changelog topics (``settings.shards`` partitions) if missing."""
    admin = AdminClient(settings.kafka_config())
    wanted = [
        NewTopic(
            name,
            num_partitions=settings.shards,
            replication_factor=settings.replication_factor,
            config={"cleanup.policy": "compact"},
        )
        for name in changelog_topics(settings)
    ]
    for name, future in admin.create_topics(wanted, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise TopicError(f"cannot create {name}: {error.args[0].str()}") from error
