"""The agent's producer, whose writes can be awaited (the clients come from
:mod:`streams.adapters.kafka`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Message

from streams.adapters.handoff import LoopHandoff
from streams.adapters.kafka import BATCHED_BY_CALLER, make_producer, now_ms
from streams.errors import KafkaError
from streams.settings import Settings

__all__ = ["Writer", "now_ms"]

_POLL_S = 0.1
_ANY_PARTITION = -1
"""librdkafka's RD_KAFKA_PARTITION_UA: let the partitioner choose from the key."""


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
        self._producer = make_producer(settings, BATCHED_BY_CALLER)
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

    def send_then(
        self,
        topic: str,
        value: bytes,
        *,
        key: str,
        partition: int | None = None,
        then: Callable[[int | KafkaError], object],
    ) -> None:
        """Write ``value``; ``then(offset)`` (or ``then(KafkaError)``) runs on this event loop
        once the broker answered. No future, no task: one call per write."""
        loop = asyncio.get_running_loop()

        def delivered(error: Any, message: Message) -> None:
            if error is not None:
                outcome: int | KafkaError = KafkaError(f"cannot write to {topic}: {error.str()}")
            else:
                outcome = int(message.offset() or 0)
            self._reports.put(loop, lambda: then(outcome))

        try:
            self._produce(topic, value, key, partition, delivered)
        except (KafkaException, BufferError) as error:
            then(KafkaError(f"cannot write to {topic}: {error}"))

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
