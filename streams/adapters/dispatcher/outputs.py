"""The dispatcher's writes (dispatch, retry tiers, dead letters, events): confluent-kafka.

One idempotent producer (acks=all). ``send`` calls its ``on_delivery(error)`` on the event loop
once the broker has confirmed the record (``error`` None) or failed it (a DeliveryError).
Delivery reports are served by a polling thread and hop back to the event loop in batches, one
hop per poll rather than one per record: at hundreds of records a second, a hop each (a wake-up
of the loop, a future, a task awaiting it) was a good part of the dispatcher's time. Nothing
downstream (an ack, a table delete) happens before that confirmation. ``send_unconfirmed`` (the
best-effort ``events``) has no report on the loop: a failed delivery is only counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError as ClientError
from confluent_kafka import KafkaException, Message, Producer

from streams.adapters.handoff import LoopHandoff
from streams.errors import DeliveryError, KafkaError
from streams.settings import Settings

log = logging.getLogger(__name__)

PRODUCER_CONFIG: dict[str, str | int | bool] = {
    "enable.idempotence": True,
    "acks": "all",
    "message.timeout.ms": 60_000,
}
"""librdkafka settings: confirmed by every in-sync replica; batched as the settings say
(``linger_ms``, ``batch_bytes``)."""
_POLL_S = 0.05
_FULL_WAIT_S = 0.01
_LOG_EVERY = 1000
"""Unconfirmed failures logged: the first and then one in this many."""
Headers = Sequence[tuple[str, bytes]]
WireHeaders = list[tuple[str, str | bytes | None]]
DeliveryReport = Callable[[ClientError | None, Message], None]
Delivered = Callable[[DeliveryError | None], None]
"""What ``send`` calls on the event loop: with None once confirmed, else with the failure."""


class Outputs:
    """Writes records and reports their delivery to the event loop that created it."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        logger = logging.getLogger("streams.librdkafka")
        self._producer = Producer(
            {
                **settings.kafka_config(),
                **settings.batching_config(),
                **PRODUCER_CONFIG,
                "logger": logger,
            }
        )
        self._stopping = threading.Event()
        self._reports = LoopHandoff()
        """Follow-ups of confirmed or failed records, to run on the event loop."""
        self.failed_unconfirmed = 0
        """Records of ``send_unconfirmed`` whose delivery failed (counted on the poll thread)."""
        self._thread = threading.Thread(target=self._serve, name="taskd-outputs", daemon=True)
        self._thread.start()

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: str,
        partition: int,
        on_delivery: Delivered,
        headers: Headers | None = None,
    ) -> None:
        """Queue one record for ``topic``/``partition``; ``on_delivery`` runs on the event loop
        once the broker confirmed or failed it."""

        def delivered(error: ClientError | None, message: Message) -> None:
            failure = None if error is None else _failure(topic, error)
            self._reports.put(self._loop, lambda: on_delivery(failure))

        wire_headers: WireHeaders = list(headers or ())
        self._produce(topic, value, key.encode(), partition, wire_headers, delivered)

    def send_changelog(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        *,
        partition: int,
        on_written: Callable[[int], None],
    ) -> None:
        """Queue one table changelog record (``value`` None: a deletion); ``on_written(offset)``
        runs on the event loop once it is confirmed. A failed record is written again: the
        inputs it backs stay unacknowledged until it is on the broker."""

        def delivered(error: ClientError | None, message: Message) -> None:
            if error is not None:
                log.warning("changelog record to %s failed, writing it again: %s", topic, error)
                self._reports.put(
                    self._loop,
                    lambda: self.send_changelog(
                        topic, key, value, partition=partition, on_written=on_written
                    ),
                )
                return
            offset = message.offset()
            if offset is not None:  # always set once the broker confirmed it
                self._reports.put(self._loop, lambda: on_written(offset))

        self._produce(topic, value, key, partition, [], delivered)

    def send_unconfirmed(self, topic: str, value: bytes, *, key: str, partition: int) -> None:
        """Queue one record and forget it: its delivery is not awaited, a failure only counted
        (``failed_unconfirmed``) and logged. For records nothing else waits for."""
        self._produce(topic, value, key.encode(), partition, [], self._unconfirmed)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes,
        partition: int,
        headers: WireHeaders,
        delivered: DeliveryReport,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    headers=headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:  # the local queue is full: the poll thread drains it
                self._producer.poll(_FULL_WAIT_S)
            except KafkaException as error:
                raise KafkaError(f"cannot produce to {topic}: {error.args[0]}") from error

    def _unconfirmed(self, error: ClientError | None, message: Message) -> None:
        if error is None:
            return
        self.failed_unconfirmed += 1
        if self.failed_unconfirmed % _LOG_EVERY == 1:
            log.warning(
                "%d unconfirmed record(s) lost so far, latest to %s: %s",
                self.failed_unconfirmed,
                message.topic(),
                error.str(),
            )

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait up to ``timeout_s`` for the queued records, then stop the polling thread."""
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("%d record(s) unconfirmed when the dispatcher stopped", left)
        self._stopping.set()
        self._thread.join(timeout_s)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(_POLL_S)
            self._reports.hand_over()


def _failure(topic: str, error: ClientError) -> DeliveryError:
    text = f"{topic}: {error.str()}"
    return DeliveryError(text, failed=1, first_error=text)
