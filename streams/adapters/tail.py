"""Read ``results``, ``replies``, ``events`` or ``dlq`` as JSON objects, for ``taskd tail``.

The topics hold Avro (single-object or Confluent framing), which kcat and Kafka's console
consumer print as bytes; this reads them with the settings' codec and turns each record into a
JSON-able dict: enums by name, bytes as the JSON they hold when they hold JSON (payloads and
outputs usually do), else as text, else base64. A results record is a batch: one dict per
result. From the beginning of every partition (or from the first record written at or after
``since_ms``) to the end it had when reading started, or on and on with ``follow``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams.adapters.kafka import client_config, codec_for, offsets_since, partition_ends
from streams.errors import ConfigError, DecodeError
from streams.settings import Settings
from streams.wire import DeadLetter, ResultBatch, TaskEvent, TaskOutcome, WireRecord
from streams.wire.codec import RecordCodec

KINDS = ("results", "replies", "events", "dlq")
_POLL_S = 0.2
_TIMEOUT_S = 10.0


def tail(
    settings: Settings,
    kind: str,
    *,
    follow: bool = False,
    stop: threading.Event | None = None,
    since_ms: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Every record of the ``kind`` topic as JSON-able dicts, oldest first per partition
    (those written at or after ``since_ms``, ms since the epoch, when given); with
    ``follow``, new ones as they come until ``stop`` is set."""
    topic, split = _topic(settings, kind)
    codec = codec_for(settings)
    consumer = Consumer(  # librdkafka's own lines go to our logger, not raw to stderr
        client_config(
            settings,
            {
                "group.id": f"{settings.topic_prefix}tail.{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            },
        )
    )
    try:
        ends = _assign(consumer, topic, since_ms)
        while follow or ends:
            if stop is not None and stop.is_set():
                return
            for message in consumer.consume(500, timeout=_POLL_S):
                if message.error() is not None:
                    continue
                if since_ms is None or message.timestamp()[1] >= since_ms:
                    yield from split(codec, message)  # a record stamped earlier arrived late
                partition, offset = message.partition(), message.offset()
                if partition in ends and offset is not None and offset + 1 >= ends[partition]:
                    del ends[partition]
    finally:
        consumer.close()


def record_json(record: Any) -> Any:
    """A wire record (or a field of one) as JSON-able values."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: record_json(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, enum.Enum):
        return record.value
    if isinstance(record, bytes):
        return _bytes_json(record)
    if isinstance(record, tuple | list):
        return [record_json(item) for item in record]
    return record


def _bytes_json(data: bytes) -> Any:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}
    try:
        return json.loads(text)
    except ValueError:
        return text


Split = Callable[[RecordCodec, Message], list[dict[str, Any]]]


def _topic(settings: Settings, kind: str) -> tuple[str, Split]:
    topics = settings.topics
    if kind == "results":
        return topics.results, _results
    if kind == "replies":
        return topics.replies, _one(TaskOutcome)
    if kind == "events":
        return topics.events, _one(TaskEvent)
    if kind == "dlq":
        return topics.dlq, _one(DeadLetter)
    raise ConfigError(f"unknown topic {kind!r}; one of: {', '.join(KINDS)}")


def _results(codec: RecordCodec, message: Message) -> list[dict[str, Any]]:
    batch = _decoded(codec, message, ResultBatch)
    if batch is None:
        return [_undecodable(message)]
    return [record_json(result) for result in batch.results]


def _one(record_type: type[WireRecord]) -> Split:
    def split(codec: RecordCodec, message: Message) -> list[dict[str, Any]]:
        record = _decoded(codec, message, record_type)
        return [_undecodable(message) if record is None else record_json(record)]

    return split


def _decoded(codec: RecordCodec, message: Message, record_type: type[Any]) -> Any:
    try:
        return codec.decode(message.value() or b"", record_type)
    except DecodeError:
        return None


def _undecodable(message: Message) -> dict[str, Any]:
    return {"undecodable": True, "partition": message.partition(), "offset": message.offset()}


def _assign(consumer: Consumer, topic: str, since_ms: int | None) -> dict[int, int]:
    """Assign every partition of ``topic`` from its start, or from its first record written at
    or after ``since_ms`` (its end when there is none); the end offsets of those with records
    to read (where reading without ``follow`` stops)."""
    ends = partition_ends(consumer, topic, timeout_s=_TIMEOUT_S)
    starts = {partition: low for partition, (low, _) in ends.items()}
    if since_ms is not None:
        highs = {partition: high for partition, (_, high) in ends.items()}
        starts = offsets_since(consumer, topic, highs, since_ms, timeout_s=_TIMEOUT_S)
    consumer.assign(
        [
            TopicPartition(topic, p, OFFSET_BEGINNING if since_ms is None else starts[p])
            for p in ends
        ]
    )
    return {p: high for p, (_, high) in ends.items() if high > starts[p]}
