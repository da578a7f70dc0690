"""One place that makes the Kafka clients and the codec, from the settings.

Every producer is idempotent (acks=all), batches as the settings say (``linger_ms``,
``batch_bytes``) and partitions keys with murmur2, the Java client's, so a key lands where a Java
or console producer would put it. Records are not compressed: they are small, and the broker
decompresses every compressed batch to validate it (side by side, 20,000 no-op tasks: lz4 cost
the broker 0.32 ms per task against 0.23 uncompressed, and a quarter of the throughput).

librdkafka's own log lines go to the ``streams.librdkafka`` logger, not raw to stderr, so a
broker that is down shows as one error of ours, not a stream of connection retries.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import KafkaError as ClientError
from confluent_kafka.admin import AdminClient

from streams.errors import ConfigError, KafkaError, TopicError
from streams.settings import Settings
from streams.wire import Codec
from streams.wire.codec import RecordCodec
from streams.wire.json_codec import READABLE_RECORDS, JsonRecordCodec

LIBRDKAFKA_LOG = logging.getLogger("streams.librdkafka")
ConfigValue = str | int | float | bool

PRODUCER_CONFIG: Mapping[str, ConfigValue] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "none",
    "batch.num.messages": 10_000,
    "message.timeout.ms": 120_000,
    "partitioner": "murmur2_random",
    "allow.auto.create.topics": False,
}
"""librdkafka settings of every producer, besides the settings' batching: confirmed by every
in-sync replica, a record unconfirmed after 120 s reported failed. A producer never has a
missing topic created (on a broker that allows it): a mistyped prefix fails its records, where
it would make a topic of one partition nobody reads (``taskd topics create`` makes ours)."""


BATCHED_BY_CALLER: Mapping[str, ConfigValue] = {"linger.ms": 0}
"""For the dispatcher's and the agents' producers: each of their records already holds what one
pass (or one turn of an agent's loop) decided, so waiting for more only lengthens every round
trip between them. Side by side (20,000 no-op tasks, 4 agents x 16 slots): linger 5 ms 2,720
tasks/s, 0 ms 3,940. The settings' ``linger_ms`` is for producers of single tasks (the client)."""


def client_config(settings: Settings, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka configuration: the connection keys, our logger, then ``extra``."""
    return {**settings.kafka_config(), "logger": LIBRDKAFKA_LOG, **(extra or {})}


def producer_config(
    settings: Settings, overrides: Mapping[str, ConfigValue] | None = None
) -> dict[str, Any]:
    """The configuration :func:`make_producer` uses: the settings' batching, PRODUCER_CONFIG,
    then ``overrides``."""
    config = client_config(settings, {**settings.batching_config(), **PRODUCER_CONFIG})
    if overrides and "delivery.timeout.ms" in overrides:  # librdkafka's alias of the other
        del config["message.timeout.ms"]
    config.update(overrides or {})
    return config


def make_producer(
    settings: Settings, overrides: Mapping[str, ConfigValue] | None = None
) -> Producer:
    """A producer as described in the module docstring."""
    return Producer(producer_config(settings, overrides))


def make_consumer(
    settings: Settings, *, group_id: str, extra: Mapping[str, Any] | None = None
) -> Consumer:
    """A consumer of group ``group_id`` that never commits by itself and never stores offsets
    behind the application's back (commits are explicit)."""
    keys = {"group.id": group_id, "enable.auto.commit": False, **(extra or {})}
    return Consumer(client_config(settings, keys))


def codec_for(settings: Settings) -> RecordCodec:
    """The codec every component uses: Avro single-object, or the Confluent framing when a
    schema registry is configured (reading both; RegistryError at once if it cannot be reached:
    see ``streams.adapters.registry``); the records people read as JSON with ``record_format``
    "json", and JSON read whatever the setting (``streams.wire.json_codec``)."""
    readable = READABLE_RECORDS if settings.record_format == "json" else ()
    return JsonRecordCodec(_avro_codec(settings), readable)


def _avro_codec(settings: Settings) -> RecordCodec:
    if settings.schema_registry_url:
        from streams.adapters.registry import registry_codec  # confluent's registry client

        return registry_codec(settings)
    return Codec()


_RETRY_S = 0.1
_SNAPSHOT_POLL_S = 0.2
MISSING_TOPIC_GRACE_S = 2.0
"""How long a missing topic is waited for before it is reported missing."""
_TRANSIENT = frozenset(
    {
        ClientError.NOT_LEADER_FOR_PARTITION,
        ClientError.LEADER_NOT_AVAILABLE,
        ClientError.UNKNOWN_TOPIC_OR_PART,
        ClientError.COORDINATOR_LOAD_IN_PROGRESS,
        ClientError.COORDINATOR_NOT_AVAILABLE,
        ClientError.NOT_COORDINATOR,
        ClientError._TIMED_OUT,
    }
)
"""Errors a just-created topic or a starting broker gives for a moment (not all are flagged
retriable by librdkafka)."""
_UNKNOWN = ClientError.UNKNOWN_TOPIC_OR_PART
T = TypeVar("T")


def record_header(message: Message, name: str) -> bytes | None:
    """The value of a Kafka record's header ``name`` (the first one; b"" for a null value),
    None when the record has no such header."""
    headers: Any = message.headers() or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name:
            return value.encode() if isinstance(value, str) else bytes(value or b"")
    return None


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch (records carry it)."""
    return time.time_ns() // 1_000_000


def check_broker(consumer: Consumer, settings: Settings, topic: str, timeout_s: float) -> int:
    """The partition count of ``topic``; KafkaError if no broker answers within ``timeout_s``.

    ConfigError if the topic does not exist (the topics are created by ``taskd topics create``)
    once MISSING_TOPIC_GRACE_S have passed: a topic just created takes a moment to show.
    """
    deadline = time.monotonic() + min(timeout_s, MISSING_TOPIC_GRACE_S)
    while True:
        partitions = _partition_count(consumer, settings, topic, timeout_s)
        if partitions:
            return partitions
        if time.monotonic() > deadline:
            raise ConfigError(
                f"topic {topic} does not exist: create the topics with `taskd topics create`"
            )
        time.sleep(_RETRY_S)


def _partition_count(consumer: Consumer, settings: Settings, topic: str, timeout_s: float) -> int:
    """How many partitions the broker lists for ``topic`` (0: not known to it)."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as error:
        raise KafkaError(unreachable(settings, timeout_s, error.args[0].str())) from error
    described = metadata.topics.get(topic)
    if described is None or (described.error is not None and described.error.code() == _UNKNOWN):
        return 0
    return len(described.partitions)


def connect_timeout_s(settings: Settings) -> float:
    """The settings' connect timeout in seconds (``connect_timeout_ms``)."""
    return settings.connect_timeout_ms / 1000


def unreachable(settings: Settings, timeout_s: float, reason: str) -> str:
    """The one line every command says when no broker answers: the address, the wait, why."""
    return (
        f"no Kafka broker reachable at {settings.bootstrap_servers} within {timeout_s:g} s "
        f"({reason}); the address comes from --bootstrap-servers or TASKD_BOOTSTRAP_SERVERS"
    )


def require_broker(settings: Settings, timeout_s: float | None = None) -> None:
    """Return once a broker answers a metadata request within ``timeout_s`` (default: the
    settings' ``connect_timeout_ms``); else KafkaError in one line naming the address and the
    cause librdkafka gave (``Connection refused``, a name that does not resolve, ...).

    Commands call it before their work, so an unreachable broker costs the connect timeout, not
    the longer timeouts of the work (30 s to list topics, 60 s to read the dead letters), and
    librdkafka's connection retries never reach the terminal: they go to a private logger, and
    only the last one is kept as the cause.
    """
    wait_s = connect_timeout_s(settings) if timeout_s is None else timeout_s
    deadline = time.monotonic() + wait_s
    causes = _LastLines()
    refused: list[ClientError] = []
    _PROBE_LOG.addHandler(causes)
    try:
        admin = AdminClient(
            client_config(settings, {"logger": _PROBE_LOG, "error_cb": _keep_refusal(refused)})
        )
        while True:
            try:
                admin.list_topics(
                    timeout=max(0.0, min(_PROBE_SLICE_S, deadline - time.monotonic()))
                )
                return
            except KafkaException as error:
                admin.poll(0)  # hands over what librdkafka logged and reported meanwhile
                if refused:  # no use waiting: the broker answered, and said no
                    raise KafkaError(authentication_failed(settings, refused[0])) from error
                if time.monotonic() >= deadline:
                    reason = causes.cause() or error.args[0].str()
                    raise KafkaError(unreachable(settings, wait_s, reason)) from error
    finally:
        _PROBE_LOG.removeHandler(causes)


_PROBE_SLICE_S = 0.5
"""The broker is asked again this often, so that a refused login is said at once."""


def _keep_refusal(refused: list[ClientError]) -> Callable[[ClientError], None]:
    def on_error(error: ClientError) -> None:
        if error.code() == ClientError._AUTHENTICATION:
            refused.append(error)

    return on_error


def authentication_failed(settings: Settings, error: ClientError) -> str:
    """One line: the broker refused this client's credentials."""
    who = settings.sasl_username or "this client's certificate"
    return (
        f"authentication failed at {settings.bootstrap_servers} as {who} "
        f"({settings.security_protocol}): {error.str()}"
    )


_PROBE_LOG = logging.getLogger(f"{LIBRDKAFKA_LOG.name}.probe")
_PROBE_LOG.propagate = False
_PROBE_LOG.addHandler(logging.NullHandler())


class _LastLines(logging.Handler):
    """Keeps librdkafka's last connection failure: ``Connection refused``, ``Failed to
    resolve 'host:9092': Name or service not known``, an authentication failure."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.last = record.getMessage()

    def cause(self) -> str | None:
        """The last failure without librdkafka's prefixes and timing, or None."""
        if self.last is None:
            return None
        text = self.last.rsplit("/bootstrap: ", 1)[-1]
        text = _AFTER.sub("", text).strip()
        connect = _CONNECT_FAILED.fullmatch(text)
        return connect.group(1) if connect else text


_AFTER = re.compile(r"\s*\(after \d+ms in state \w+[^)]*\)")
_CONNECT_FAILED = re.compile(r"Connect to \S+ failed: (.+)")


def retrying(
    call: Callable[[], T],
    *,
    what: str,
    timeout_s: float,
    refresh: Callable[[], object] | None = None,
) -> T:
    """``call()``, retried while the broker answers with a transient error (a new topic whose
    leader is not elected yet, a coordinator loading) for up to ``timeout_s``; else KafkaError.

    ``refresh`` runs before each new try: a client caches where partitions lead and would ask
    the wrong broker again (e.g. ``lambda: consumer.list_topics(topic)``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as error:
            cause = error.args[0]
            if not _transient(cause) or time.monotonic() > deadline:
                raise KafkaError(f"cannot {what}: {cause.str()}") from error
        time.sleep(_RETRY_S)
        if refresh is not None:
            with contextlib.suppress(KafkaException):
                refresh()


def _transient(error: Any) -> bool:
    return bool(error.retriable()) or error.code() in _TRANSIENT


def end_offset(consumer: Consumer, topic: str, partition: int, *, timeout_s: float) -> int:
    """The high watermark of one partition: the offset the next record will get."""
    _, high = watermarks(consumer, topic, partition, timeout_s=timeout_s)
    return high


def watermarks(
    consumer: Consumer, topic: str, partition: int, *, timeout_s: float
) -> tuple[int, int]:
    """(low, high) watermark of one partition, retried while its leader is being elected."""
    low, high = retrying(
        lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s),
        what=f"read the offsets of {topic}[{partition}]",
        timeout_s=timeout_s,
        refresh=lambda: consumer.list_topics(topic, timeout=timeout_s),
    )
    return int(low), int(high)


def offsets_since(
    consumer: Consumer, topic: str, partitions: dict[int, int], since_ms: int, *, timeout_s: float
) -> dict[int, int]:
    """For each of ``partitions`` (partition -> its end offset): the offset of its first record
    written at or after ``since_ms`` (ms since the epoch), its end when there is none; retried
    while a leader is being elected, else KafkaError."""
    asked = [TopicPartition(topic, partition, since_ms) for partition in partitions]
    found = retrying(
        lambda: consumer.offsets_for_times(asked, timeout=timeout_s),
        what=f"find the offsets of {topic} at {since_ms} ms",
        timeout_s=timeout_s,
    )
    starts = {}
    for each in found:
        if each.error is not None:
            raise KafkaError(f"cannot find the offset of {topic}[{each.partition}]: {each.error}")
        starts[each.partition] = partitions[each.partition] if each.offset < 0 else each.offset
    return starts


def partition_ends(
    consumer: Consumer, topic: str, *, timeout_s: float
) -> dict[int, tuple[int, int]]:
    """(low, high) watermarks of every partition of ``topic``; TopicError if it does not
    exist, KafkaError if the broker cannot tell within ``timeout_s``."""
    metadata = retrying(
        lambda: consumer.list_topics(topic, timeout=timeout_s),
        what=f"read the partitions of {topic}",
        timeout_s=timeout_s,
    ).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise TopicError(f"topic {topic} does not exist (taskd topics create makes it)")
    return {
        partition: watermarks(consumer, topic, partition, timeout_s=timeout_s)
        for partition in sorted(metadata.partitions)
    }


def read_snapshot(
    settings: Settings, topic: str, decode: Callable[[Message], T], *, timeout_s: float
) -> list[T]:
    """Every record of ``topic`` up to the end each partition had when called, decoded, in
    partition order. The partitions are assigned with a throwaway group id that never joins
    nor commits, so reading changes nothing on the cluster and ends while others write on.
    TopicError if the topic does not exist; KafkaError if the read fails or takes longer than
    ``timeout_s``."""
    consumer = Consumer(
        client_config(
            settings,
            {
                "group.id": f"taskd-reader-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        ends = partition_ends(consumer, topic, timeout_s=timeout_s)
        found = read_ranges(consumer, topic, ends, within_s=timeout_s)
        return [decode(message) for partition in sorted(found) for message in found[partition]]
    finally:
        consumer.close()


def read_ranges(
    consumer: Consumer, topic: str, ranges: Mapping[int, tuple[int, int]], *, within_s: float
) -> dict[int, list[Message]]:
    """The records of each ``topic[partition]`` from its start offset up to (not including) its
    end offset (``ranges``: partition -> (start, end)), all partitions read at once by
    ``consumer`` (which needs ``enable.partition.eof``); KafkaError past ``within_s``."""
    found: dict[int, list[Message]] = {partition: [] for partition in ranges}
    pending = {p for p, (start, end) in ranges.items() if start < end}
    if not pending:
        return found
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(pending)])
    deadline = time.monotonic() + within_s
    while pending:
        if time.monotonic() > deadline:
            raise KafkaError(f"reading {topic} timed out; partitions {sorted(pending)} left")
        for message in consumer.consume(10_000, timeout=_SNAPSHOT_POLL_S):
            partition = message.partition() or 0
            end = ranges[partition][1]
            offset = _snapshot_offset(topic, message)
            if offset is not None and offset < end:
                found[partition].append(message)
            if offset is None or offset + 1 >= end:
                pending.discard(partition)
    consumer.unassign()
    return found


def _snapshot_offset(topic: str, message: Message) -> int | None:
    """The message's offset; None at a partition's end; KafkaError for any other error."""
    error = message.error()
    if error is None:
        return message.offset() or 0
    if error.code() == ClientError._PARTITION_EOF:
        return None
    raise KafkaError(f"reading {topic}: {error.str()}")
