"""The dispatcher's writes (dispatch, retry tiers, dead letters): confluent-kafka, confirmed.

One idempotent producer (acks=all). ``send`` returns an asyncio future that resolves when the
broker has confirmed the record, or fails with DeliveryError; delivery reports are served by a
polling thread and hop back to the event loop. Nothing downstream (an ack, a table delete)
happens before that confirmation.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError as ClientError
from confluent_kafka import KafkaException, Message, Producer

from streams.errors import DeliveryError, KafkaError
from streams.settings import Settings

log = logging.getLogger(__name__)

PRODUCER_CONFIG: dict[str, str | int | bool] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "message.timeout.ms": 60_000,
}
"""librdkafka settings: confirmed by every in-sync replica, batched for at most 5 ms."""
_POLL_S = 0.05
_FULL_WAIT_S = 0.01
Headers = Sequence[tuple[str, bytes]]


class Outputs:
    """Writes records and reports their delivery to the event loop that created it."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        logger = logging.getLogger("streams.librdkafka")
        self._producer = Producer({**settings.kafka_config(), **PRODUCER_CONFIG, "logger": logger})
        self._stopping = threading.Event()
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

        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key.encode(),
                    partition=partition,
                    headers=list(headers or ()),
                    on_delivery=delivered,
                )
                return future
            except BufferError:  # the local queue is full: the poll thread drains it
                self._producer.poll(_FULL_WAIT_S)
            except KafkaException as error:
                raise KafkaError(f"cannot produce to {topic}: {error.args[0]}") from error

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
