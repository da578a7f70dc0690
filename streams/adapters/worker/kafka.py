"""The agent's confluent-kafka clients: a producer whose writes can be awaited, and helpers.

librdkafka's own log lines go to the ``streams.librdkafka`` logger rather than stderr, so a
broker that is down shows as one error of ours, not a stream of connection retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka import KafkaError as ClientError

from streams.adapters.handoff import LoopHandoff
from streams.errors import ConfigError, KafkaError
from streams.settings import Settings

LIBRDKAFKA_LOG = logging.getLogger("streams.librdkafka")
_POLL_S = 0.1
_RETRY_S = 0.1
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
_ANY_PARTITION = -1
"""librdkafka's RD_KAFKA_PARTITION_UA: let the partitioner choose from the key."""


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch (records carry it)."""
    return time.time_ns() // 1_000_000


def client_config(settings: Settings, extra: dict[str, Any]) -> dict[str, Any]:
    """librdkafka configuration: the connection keys, our logger, then ``extra``."""
    return {**settings.kafka_config(), "logger": LIBRDKAFKA_LOG, **extra}


def plain_consumer(
    settings: Settings, *, group_id: str, extra: dict[str, Any] | None = None
) -> Consumer:
    """A consumer used with ``assign()`` only (no subscription, no automatic commits)."""
    keys = {"group.id": group_id, "enable.auto.commit": False, **(extra or {})}
    return Consumer(client_config(settings, keys))


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
        raise KafkaError(
            f"no Kafka broker reachable at {settings.bootstrap_servers} within {timeout_s:g} s "
            f"({error.args[0].str()})"
        ) from error
    described = metadata.topics.get(topic)
    if described is None or (described.error is not None and described.error.code() == _UNKNOWN):
        return 0
    return len(described.partitions)


def retrying(call: Callable[[], T], *, what: str, timeout_s: float) -> T:
    """``call()``, retried while the broker answers with a transient error (a new topic whose
    leader is not elected yet, a coordinator loading) for up to ``timeout_s``; else KafkaError.
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


def _transient(error: Any) -> bool:
    return bool(error.retriable()) or error.code() in _TRANSIENT


def end_offset(consumer: Consumer, topic: str, partition: int, *, timeout_s: float) -> int:
    """The high watermark of one partition: the offset the next record will get."""
    _, high = retrying(
        lambda: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s),
        what=f"read the end offset of {topic}[{partition}]",
        timeout_s=timeout_s,
    )
    return int(high)


def _settle(future: asyncio.Future[int], outcome: int | Exception) -> None:
    if future.done():  # the waiter was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Writer:
    """An idempotent producer (acks=all) whose writes return futures of their offsets.

    A thread of its own serves the delivery reports, so the futures settle whether the caller
    is a thread (``send_sync``) or the event loop (``send``).
    """

    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(
            client_config(
                settings,
                {
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    # the Java and aiokafka default for keyed records, so keys land alike
                    "partitioner": "murmur2_random",
                },
            )
        )
        self._closed = threading.Event()
        self._reports = LoopHandoff()
        """Outcomes of ``send``'s writes, to settle on their event loops."""
        self._poller = threading.Thread(target=self._serve, name="taskd-writer", daemon=True)
        self._poller.start()

    def submit(
        self, topic: str, value: bytes, *, key: str, partition: int | None = None
    ) -> concurrent.futures.Future[int]:
        """Start writing ``value``; the future gives its offset once the broker has it."""
        future: concurrent.futures.Future[int] = concurrent.futures.Future()

        def delivered(error: Any, message: Message) -> None:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # waiter cancelled
                if error is not None:
                    future.set_exception(KafkaError(f"cannot write to {topic}: {error.str()}"))
                else:
                    future.set_result(int(message.offset() or 0))

        try:
            self._produce(topic, value, key, partition, delivered)
        except (KafkaException, BufferError) as error:
            future.set_exception(KafkaError(f"cannot write to {topic}: {error}"))
        return future

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: str,
        partition: int | None,
        delivered: Callable[[Any, Message], None],
    ) -> None:
        self._producer.produce(
            topic,
            value,
            key=key,
            partition=_ANY_PARTITION if partition is None else partition,
            on_delivery=delivered,
        )

    async def send(
        self, topic: str, value: bytes, *, key: str, partition: int | None = None
    ) -> int:
        """Write ``value`` and wait until the broker has it; its offset. KafkaError if not.

        The delivery reports of the event loop's writes hop back to it in one batch per poll
        of the delivery thread, not one wake-up each: an agent writes a result per task.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def delivered(error: Any, message: Message) -> None:
            if error is not None:
                outcome: int | Exception = KafkaError(f"cannot write to {topic}: {error.str()}")
            else:
                outcome = int(message.offset() or 0)
            self._reports.put(loop, lambda: _settle(future, outcome))

        try:
            self._produce(topic, value, key, partition, delivered)
        except (KafkaException, BufferError) as error:
            raise KafkaError(f"cannot write to {topic}: {error}") from error
        return await future

    def send_sync(self, topic: str, value: bytes, *, key: str, timeout_s: float) -> int:
        """Blocking ``send`` for threads; KafkaError when not delivered within ``timeout_s``."""
        try:
            return self.submit(topic, value, key=key).result(timeout_s)
        except TimeoutError as error:
            raise KafkaError(f"no delivery to {topic} within {timeout_s:g} s") from error

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (for up to ``timeout_s``) and stop the delivery thread."""
        self._closed.set()
        self._poller.join()
        self._producer.flush(timeout_s)
        self._reports.hand_over()  # what the flush delivered, on this thread

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(_POLL_S)
            self._reports.hand_over()
