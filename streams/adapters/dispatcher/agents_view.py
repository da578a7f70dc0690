"""The global view of the agents: the ``registry`` topic and the heartbeats, read outside the
consumer group, so every dispatcher instance sees every agent; and the other instances' reports
(``dispatchers``, ``group.py``).

A thread reads with a plain consumer (``assign()``, no group membership, no commits): the
registry and the reports from their beginning, the heartbeats from their end (only fresh ones
matter). Decoded
records hop to the event loop in batches, in the order read; ``caught_up`` is set on the loop
once the registry has been read to the end it had at start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ClientError

from streams.adapters.kafka import end_offset, retrying
from streams.errors import DecodeError
from streams.settings import Settings
from streams.wire import AgentHeartbeat, AgentRegistration, DispatcherStatus, RecordCodec

log = logging.getLogger(__name__)

AgentRecord = AgentRegistration | AgentHeartbeat
ViewRecord = AgentRecord | DispatcherStatus
Sink = Callable[[list[ViewRecord]], None]
_EOF = ClientError._PARTITION_EOF
_POLL_S = 0.1
_BATCH = 500
_TIMEOUT_S = 30.0


class AgentsView:
    """Reads registrations and heartbeats in a thread and hands them to ``sink`` on ``loop``."""

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        sink: Sink,
        codec: RecordCodec,
    ) -> None:
        """``codec``: the settings' (``codec_for``), the one agents encode with."""
        self._topics = settings.topics
        self._loop = loop
        self._sink = sink
        self._codec = codec
        self.caught_up = asyncio.Event()
        self._stopping = threading.Event()
        self._kinds: dict[str, type[ViewRecord]] = {
            self._topics.registry: AgentRegistration,
            self._topics.heartbeats: AgentHeartbeat,
            self._topics.dispatchers: DispatcherStatus,
        }
        config = {
            **settings.kafka_config(),
            "group.id": f"{settings.topic_prefix}dispatcher.view.{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": logging.getLogger("streams.librdkafka"),
        }
        self._consumer = Consumer(config)
        self._thread = threading.Thread(target=self._serve, name="taskd-agents-view", daemon=True)

    def start(self) -> None:
        """Assign the partitions and start reading (KafkaError if the broker cannot tell the
        registry's end within 30 s). Blocking: call it in a thread."""
        registry = TopicPartition(self._topics.registry, 0)
        self._registry_end = end_offset(
            self._consumer, registry.topic, registry.partition, timeout_s=_TIMEOUT_S
        )
        metadata = retrying(
            lambda: self._consumer.list_topics(self._topics.heartbeats, timeout=_TIMEOUT_S),
            what="read the heartbeats' partitions",
            timeout_s=_TIMEOUT_S,
        )
        partitions = metadata.topics[self._topics.heartbeats].partitions
        beats = [TopicPartition(self._topics.heartbeats, p, OFFSET_END) for p in partitions]
        reports = TopicPartition(self._topics.dispatchers, 0, OFFSET_BEGINNING)
        self._consumer.assign(
            [TopicPartition(registry.topic, 0, OFFSET_BEGINNING), reports, *beats]
        )
        self._thread.start()
        if self._registry_end <= 0:
            self._hop(lambda _: self.caught_up.set(), [])

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(_TIMEOUT_S)
        self._consumer.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._consumer.consume(_BATCH, timeout=_POLL_S)
            except KafkaException as error:
                log.warning("agents view: %s", error)
                time.sleep(_POLL_S)
                continue
            records, reached = self._decode(messages)
            if records:
                self._hop(self._sink, records)
            if reached and not self.caught_up.is_set():
                self._hop(lambda _: self.caught_up.set(), [])

    def _decode(self, messages: list[Any]) -> tuple[list[ViewRecord], bool]:
        records: list[ViewRecord] = []
        reached = False
        for message in messages:
            is_registry = message.topic() == self._topics.registry
            if message.error() is not None:
                reached = reached or (is_registry and message.error().code() == _EOF)
                continue
            kind = self._kinds[message.topic()]
            if message.value() is None:  # a report's tombstone (compaction): nothing to say
                continue
            if is_registry and message.offset() + 1 >= self._registry_end:
                reached = True
            try:
                records.append(self._codec.decode(message.value(), kind))
            except DecodeError as error:
                log.warning("agents view: skipping a record of %s: %s", message.topic(), error)
        return records, reached

    def _hop(self, call: Sink, records: list[ViewRecord]) -> None:
        try:
            self._loop.call_soon_threadsafe(call, records)
        except RuntimeError:  # the loop closed while stopping
            self._stopping.set()
