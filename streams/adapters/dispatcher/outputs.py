"""The dispatcher's writes: one producer for every record it writes, confirmations counted.

Assignment batches, retry records, dead letters, lifecycle events and the state changelog all go
through one idempotent producer (acks=all, ``streams.adapters.kafka``). A checkpoint must know
that every record written before it is on the broker, so records are counted per *epoch*: the
checkpoint closes the current epoch (:meth:`Outputs.close_epoch`) and waits until every record of
it and of the epochs before is confirmed (:meth:`Outputs.when_confirmed`).

A polling thread serves the delivery reports and hands them to the event loop in one batch per
poll. A failed record is written again (the readers drop repeats): a record given up would leave
its checkpoint waiting for ever. Records nothing waits for (lifecycle events) are not counted,
and a failure of one is only counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError as ClientError
from confluent_kafka import KafkaException, Message

from streams.adapters.handoff import LoopHandoff
from streams.adapters.kafka import BATCHED_BY_CALLER, make_producer
from streams.errors import KafkaError
from streams.settings import Settings

log = logging.getLogger(__name__)

_POLL_S = 0.05
_FULL_WAIT_S = 0.01
_LOG_EVERY = 1000
"""Unconfirmed failures logged: the first and then one in this many."""
RETRY_WRITE_S = 1.0
"""Pause before a failed record is written again."""
Headers = Sequence[tuple[str, bytes]]
Then = Callable[[], object]


class Outputs:
    """Writes records; tells the event loop that created it when epochs are confirmed."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._producer = make_producer(settings, BATCHED_BY_CALLER)
        self._epoch = 0
        self._pending: dict[int, int] = {}
        """Epoch -> its records not confirmed yet (epochs with none are dropped)."""
        self._waiting: list[tuple[int, Then]] = []
        self._closed = False
        self._stopping = threading.Event()
        self._reports = LoopHandoff()
        self.records = 0
        """Records written (each once, however often it had to be tried)."""
        self.failed_unconfirmed = 0
        self._thread = threading.Thread(target=self._serve, name="taskd-outputs", daemon=True)
        self._thread.start()

    # --- writing -------------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes,
        partition: int,
        headers: Headers | None = None,
        then: Then | None = None,
    ) -> None:
        """Write one record (``value`` None: a tombstone), counted in the current epoch;
        ``then()`` runs on the loop once it is confirmed."""
        epoch = self._epoch
        self._pending[epoch] = self._pending.get(epoch, 0) + 1
        self.records += 1
        self._write(topic, value, key, partition, headers, epoch, then)

    def send_unconfirmed(
        self, topic: str, value: bytes | None, *, key: bytes, partition: int
    ) -> None:
        """Write one record nothing waits for (a failure is only counted and logged; ``value``
        None: a tombstone)."""
        self.records += 1
        self._produce(topic, value, key, partition, None, self._unconfirmed)

    # --- epochs --------------------------------------------------------------------------------

    def close_epoch(self) -> int:
        """End the current epoch (later records count in the next one); the epoch ended."""
        closed = self._epoch
        self._epoch += 1
        return closed

    def when_confirmed(self, epoch: int, then: Then) -> None:
        """``then()`` on the loop once every record of ``epoch`` and the epochs before it is
        confirmed (at once if they are)."""
        if self._confirmed_through(epoch):
            then()
        else:
            self._waiting.append((epoch, then))

    def unconfirmed(self) -> int:
        """Records written and not confirmed yet."""
        return sum(self._pending.values())

    # --- closing -------------------------------------------------------------------------------

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for every record (blocking); how many are still unconfirmed.
        Their confirmations run on the loop afterwards."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop; nothing runs on the loop
        any more."""
        left = self.flush(timeout_s)
        if left:
            log.warning("%d record(s) unconfirmed when the dispatcher stopped", left)
        self._closed = True
        self._stopping.set()
        self._thread.join(timeout_s)

    # --- internals -----------------------------------------------------------------------------

    def _write(
        self,
        topic: str,
        value: bytes | None,
        key: bytes,
        partition: int,
        headers: Headers | None,
        epoch: int,
        then: Then | None,
    ) -> None:
        def delivered(error: ClientError | None, _message: Message) -> None:
            self._reports.put(self._loop, lambda: settle(error))

        def settle(error: ClientError | None) -> None:
            if self._closed:
                return
            if error is not None:
                log.warning("write to %s failed, writing it again: %s", topic, error.str())
                self._loop.call_later(RETRY_WRITE_S, again)
                return
            self._confirmed(epoch)
            if then is not None:
                then()

        def again() -> None:
            if not self._closed:
                self._produce(topic, value, key, partition, headers, delivered)

        self._produce(topic, value, key, partition, headers, delivered)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes,
        partition: int,
        headers: Headers | None,
        delivered: Callable[[ClientError | None, Message], None],
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    headers=list(headers) if headers else None,
                    on_delivery=delivered,
                )
                return
            except BufferError:  # the local queue is full: the poll thread drains it
                self._producer.poll(_FULL_WAIT_S)
            except KafkaException as error:
                raise KafkaError(f"cannot produce to {topic}: {error.args[0]}") from error

    def _confirmed(self, epoch: int) -> None:
        left = self._pending[epoch] - 1
        if left:
            self._pending[epoch] = left
            return
        del self._pending[epoch]
        if self._waiting:
            ready = [item for item in self._waiting if self._confirmed_through(item[0])]
            if ready:
                self._waiting = [item for item in self._waiting if item not in ready]
                for _, then in ready:
                    then()

    def _confirmed_through(self, epoch: int) -> bool:
        return all(pending_epoch > epoch for pending_epoch in self._pending)

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

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(_POLL_S)
            self._reports.hand_over()
