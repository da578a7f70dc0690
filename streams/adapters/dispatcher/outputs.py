"""The dispatcher's writes (dispatch, retry tiers, dead letters, events): confluent-kafka.

One idempotent producer (acks=all). ``send`` returns an asyncio future that resolves when the
broker has confirmed the record, or fails with DeliveryError; delivery reports are served by a
polling thread and hop back to the event loop. Nothing downstream (an ack, a table delete)
happens before that confirmation. ``send_unconfirmed`` (the best-effort ``events``) skips the
future and the hop: a failed delivery is only counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError as ClientError
from confluent_kafka import KafkaException, Message, Producer

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
        headers: Headers | None = None,
    ) -> asyncio.Future[None]:
        """Queue one record for ``topic``/``partition``; the future resolves on confirmation."""
        future: asyncio.Future[None] = self._loop.create_future()

        def delivered(error: ClientError | None, message: Message) -> None:
            self._loop.call_soon_threadsafe(_settle, future, error, topic)

        wire_headers: WireHeaders = list(headers or ())
        self._produce(topic, value, key, partition, wire_headers, delivered)
        return future

    def send_unconfirmed(self, topic: str, value: bytes, *, key: str, partition: int) -> None:
        """Queue one record and forget it: its delivery is not awaited, a failure only counted
        (``failed_unconfirmed``) and logged. For records nothing else waits for."""
        self._produce(topic, value, key, partition, [], self._unconfirmed)

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: str,
        partition: int,
        headers: WireHeaders,
        delivered: DeliveryReport,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key.encode(),
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


def _settle(future: asyncio.Future[None], error: ClientError | None, topic: str) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        text = f"{topic}: {error.str()}"
        future.set_exception(DeliveryError(text, failed=1, first_error=text))
