"""The producer client: tasks to the topic of their priority, idempotent, batched, confirmed.

Each task goes to ``<prefix>tasks.p<priority>``, keyed by its affinity key (else its task id), so
one affinity key always lands in one partition. The partitioner is murmur2, the Java client's,
so a key lands where a Java, Faust or console producer would put it too. The value is the Avro
single-object encoding (the Confluent framing when a schema registry is configured), or the JSON
form the dispatcher also accepts.

Delivery is asynchronous: ``submit`` only queues; the broker's acknowledgements arrive through
delivery callbacks, and only they count a task as delivered. ``flush`` waits for them and raises
DeliveryError when some failed: nothing is reported sent before the broker confirmed it.

With ``results`` on, each task names the client's partition of the replies topic
and ``submit`` returns a :class:`~streams.adapters.replies.TaskHandle` whose ``result()``
waits for the task's outcome (``replies.py``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from functools import partial
from types import TracebackType
from typing import Any, Literal, Self, Unpack

from confluent_kafka import KafkaError as ClientError
from confluent_kafka import KafkaException, Message, Producer

from streams.adapters import kafka
from streams.adapters.kafka import PRODUCER_CONFIG, ConfigValue, codec_for
from streams.adapters.replies import ReplyReader, TaskHandle, outcomes_as_completed
from streams.core.model import REPLAY_HEADER, replay_number
from streams.errors import ConfigError, DecodeError, DeliveryError, EncodeError, KafkaError
from streams.settings import Settings
from streams.wire import (
    REPLY_PARTITION_HEADER,
    CancelRequest,
    Task,
    TaskOutcome,
    validate_task,
)
from streams.wire.codec import RecordCodec
from streams.wire.records import TaskOptions

DEFAULT_PRODUCER_CONFIG = PRODUCER_CONFIG
"""librdkafka settings of the producer, besides the settings' batching (``linger_ms``,
``batch_bytes``): uncompressed; a task unconfirmed after 120 s is reported failed. Any key can be
overridden with ``producer_config``."""

Encoding = Literal["avro", "json"]
_MARGIN_S = 10.0
"""Waits exceed the delivery timeout by this much, so every delivery report has arrived."""
_POLL_S = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitReport:
    """Delivery outcome of a batch: tasks queued, confirmed by the broker, and failed."""

    queued: int
    delivered: int
    failed: int
    first_error: str | None = None

    @property
    def unconfirmed(self) -> int:
        """Tasks queued whose delivery is not known yet (neither confirmed nor failed)."""
        return self.queued - self.delivered - self.failed


ProgressCallback = Callable[[SubmitReport], None]


class _Tally:
    """Counts of one scope (the client, a batch), updated under the client's lock."""

    def __init__(self) -> None:
        self.queued = 0
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def record(self, error: str | None) -> None:
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = error

    def report(self) -> SubmitReport:
        return SubmitReport(self.queued, self.delivered, self.failed, self.first_error)


class TaskClient:
    """Submits tasks to the priority topics; a context manager whose exit flushes.

    Thread-safe: the producer is, and the counts are kept under a lock.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        producer_config: Mapping[str, ConfigValue] | None = None,
        encoding: Encoding = "avro",
        codec: RecordCodec | None = None,
        results: bool = False,
        reply_partition: int | None = None,
        replies_since_ms: int | None = None,
    ) -> None:
        """``producer_config`` overrides librdkafka keys of DEFAULT_PRODUCER_CONFIG; ``encoding``
        "json" sends the JSON form (payloads must then be UTF-8 text); ``codec`` defaults to the
        settings' (Avro single-object, or Confluent with a schema registry).

        ``results``: the tasks' outcomes come back to this client (its handles' ``result()``,
        ``wait``); without (the default: sending costs nothing more), the dispatcher writes
        none and a handle's ``result()`` says so. ``reply_partition``: the partition of
        the replies topic to read them on (default: one at random). ``replies_since_ms``
        (with ``reply_partition``): read the outcomes written there since that time (ms since
        the epoch) too, not only those to come: a client started again under the partition it
        used before gets, with ``wait`` or ``as_completed`` given their ids, those of its tasks
        that ended while it was away (of what it reads before it is asked for them, the latest
        ``KEPT_OUTCOMES``, 10,000, are kept). ConfigError without ``results`` or the
        partition."""
        if replies_since_ms is not None and not results:
            raise ConfigError("replies_since_ms reads outcomes: it needs results=True")
        codec = codec or codec_for(settings)
        self._codec = codec
        self._shards = settings.shards
        self._encode = _encoder(encoding, codec)
        self._levels = settings.priority_levels
        self._limits = settings.task_limits()
        self._topics = settings.topics
        config = kafka.producer_config(settings, producer_config)
        self._wait_s = delivery_timeout_s(config) + _MARGIN_S
        self._producer = _producer(config)
        self._replies = (
            ReplyReader(
                settings,
                codec,
                partition=reply_partition,
                since_ms=replies_since_ms,
                between=self._serve,
            )
            if results
            else None
        )
        self._lock = threading.Lock()
        self._total = _Tally()
        self._unreported = _Tally()
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stats(self) -> SubmitReport:
        """Every task this client queued, and how many the broker confirmed or failed."""
        with self._lock:
            return self._total.report()

    def submit(self, task: Task) -> TaskHandle[bytes | None]:
        """Queue ``task`` (asynchronous; ``flush`` reports its delivery); its handle.

        Raises EncodeError, before sending anything, if the task is invalid (a priority outside
        ``0 .. levels-1``, an empty id, ...) or does not fit its encoding.
        """
        return self._send(task, None)

    def submit_new(
        self,
        *,
        type: str,
        priority: int,
        payload: bytes = b"",
        now_ms: int | None = None,
        **options: Unpack[TaskOptions],
    ) -> TaskHandle[bytes | None]:
        """Queue a new task (fresh id, submitted at ``now_ms``, default now); its handle
        (``.task`` is the task as sent)."""
        submitted_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        task = Task.new(
            type=type, priority=priority, now_ms=submitted_ms, payload=payload, **options
        )
        return self.submit(task)

    def submit_many(
        self,
        tasks: Iterable[Task],
        on_progress: ProgressCallback | None = None,
        *,
        timeout_s: float | None = None,
    ) -> SubmitReport:
        """Queue every task, wait for their deliveries, and report them.

        ``on_progress`` gets the running report after each task and while waiting. Failed
        deliveries are in the report (not raised, nor raised again by ``flush``); tasks still
        unconfirmed after ``timeout_s`` (default: the delivery timeout plus a margin) count as
        ``unconfirmed``. An invalid task raises EncodeError; the tasks before it stay queued.
        """
        tally = _Tally()
        notify = on_progress or _ignore
        for task in tasks:
            self._send(task, tally)
            notify(self._report(tally))
        self._await(tally, timeout_s, notify)
        return self._report(tally)

    def submit_and_confirm(self, task: Task, timeout_s: float | None = None) -> None:
        """Send one task and return once the broker confirmed it; DeliveryError otherwise."""
        tally = _Tally()
        self._send(task, tally)
        report = self._await(tally, timeout_s, _ignore)
        if report.failed:
            raise DeliveryError(
                f"task {task.task_id} was not delivered: {report.first_error}",
                failed=1,
                first_error=report.first_error,
            )
        if report.unconfirmed:
            raise DeliveryError(
                f"task {task.task_id}: no confirmation within {self._timeout(timeout_s)} s",
                failed=0,
                unconfirmed=1,
            )

    def cancel(
        self,
        task: TaskHandle[Any] | Task | str,
        *,
        reason: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Ask for ``task`` (a handle, a task or an id) to be cancelled; return once the request
        is on the broker (DeliveryError otherwise). A task still waiting ends CANCELLED; a
        running one is told to stop (its handler sees ``taskd.cancelled()``, or an
        ``asyncio`` cancel) and ends CANCELLED; one that ended first keeps its outcome. The
        request goes to every shard, so it finds the task whatever its Kafka key."""
        task_id = task if isinstance(task, str) else task.task_id
        now_ms = time.time_ns() // 1_000_000
        request = CancelRequest(task_id=task_id, requested_at=now_ms, reason=reason)
        value = self._codec.encode(request)
        tally = _Tally()
        with self._lock:
            tally.queued = self._shards
        topic = self._topics.cancels
        for partition in range(self._shards):
            self._produce(topic, task_id.encode(), value, None, tally, task_id, partition)
        report = self._await(tally, timeout_s, _ignore)
        if report.failed or report.unconfirmed:
            raise DeliveryError(
                f"the cancel of {task_id} was not delivered: {report.first_error or 'no answer'}",
                failed=report.failed,
                unconfirmed=report.unconfirmed,
                first_error=report.first_error,
            )

    def wait(
        self, tasks: Iterable[TaskHandle[Any] | Task | str], timeout_s: float | None = None
    ) -> list[TaskOutcome]:
        """The outcomes of ``tasks`` (handles, tasks or ids this client sent), in their order,
        once every one has ended; ResultTimeoutError after ``timeout_s`` (None: no limit)."""
        waits = [self._expect(task) for task in tasks]
        list(outcomes_as_completed(waits, timeout_s))
        return [wait.result() for wait in waits]

    def as_completed(
        self,
        tasks: Iterable[TaskHandle[Any] | Task | str],
        timeout_s: float | None = None,
        *,
        no_outcome: list[BaseException] | None = None,
    ) -> Iterator[TaskOutcome]:
        """The outcomes of ``tasks`` as they end; ResultTimeoutError after ``timeout_s``. A
        task that will have no outcome raises its error, or with ``no_outcome`` has it appended
        there and is skipped."""
        waits = [self._expect(task) for task in tasks]
        return outcomes_as_completed(waits, timeout_s, no_outcome=no_outcome)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait up to ``timeout_s`` (default: the delivery timeout plus a margin) for every
        queued delivery; DeliveryError if any failed since the last flush or is unconfirmed."""
        wait_s = self._timeout(timeout_s)
        unconfirmed = self._producer.flush(wait_s)
        with self._lock:
            failed, first_error = self._unreported.failed, self._unreported.first_error
            self._unreported = _Tally()
        problems = []
        if failed:
            problems.append(f"{failed} task(s) not delivered (first error: {first_error})")
        if unconfirmed:
            problems.append(f"{unconfirmed} task(s) still unconfirmed after {wait_s:g} s")
        if problems:
            raise DeliveryError(
                "; ".join(problems), failed=failed, unconfirmed=unconfirmed, first_error=first_error
            )

    def close(self, timeout_s: float | None = None) -> None:
        """Flush (raising as ``flush`` does) and refuse further tasks; a second close is a no-op."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout_s)
        finally:
            if self._replies is not None:
                self._replies.close()

    def _send(self, task: Task, tally: _Tally | None) -> TaskHandle[bytes | None]:
        if self._closed:
            raise KafkaError("the task client is closed")
        task = self._valid(self._routed(task))
        value = self._encode(task)
        waits = self._expect(task)
        topic = self._topics.tasks(task.priority)
        key = task.kafka_key
        try:
            self._produce(topic, key.encode(), value, _record_headers(task), tally, task.task_id)
        except KafkaError as error:
            self._give_up(task.task_id, error)
            raise
        with self._lock:
            self._total.queued += 1
            (tally or self._unreported).queued += 1
        self._producer.poll(0)  # serve the delivery reports that have arrived, without waiting
        return TaskHandle(task, waits, _raw_output)

    def _routed(self, task: Task) -> Task:
        """``task`` naming this client's replies partition (as it is: without results)."""
        replies = self._replies
        if replies is None:
            return task
        replies.start()
        route = (REPLY_PARTITION_HEADER, str(replies.partition))
        return dataclasses.replace(task, headers=(*_without_reply(task.headers), route))

    def _serve(self) -> None:
        """Deliver the delivery reports that have arrived (thread-safe)."""
        self._producer.poll(0)

    def _give_up(self, task_id: str, error: BaseException) -> None:
        if self._replies is not None:
            self._replies.give_up(task_id, error)

    def _expect(self, task: TaskHandle[Any] | Task | str) -> futures.Future[TaskOutcome]:
        if isinstance(task, TaskHandle):
            return task.waits
        if self._replies is None:
            return _NO_RESULTS
        task_id = task if isinstance(task, str) else task.task_id
        self._replies.start()  # a client that sent nothing yet may wait for tasks sent before
        return self._replies.expect(task_id)

    def _valid(self, task: Task) -> Task:
        try:
            return validate_task(task, levels=self._levels, limits=self._limits)
        except DecodeError as error:
            raise EncodeError(f"task {task.task_id!r} cannot be submitted: {error}") from error

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None,
        tally: _Tally | None,
        task_id: str,
        partition: int | None = None,
    ) -> None:
        callback = partial(self._on_delivery, tally, task_id)
        deadline = time.monotonic() + self._wait_s
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, key, headers=headers, on_delivery=callback)
                else:
                    self._producer.produce(
                        topic, value, key, partition, headers=headers, on_delivery=callback
                    )
                break
            except BufferError as error:  # the local queue is full: serve deliveries, retry
                if time.monotonic() > deadline:
                    full_s = self._wait_s
                    raise KafkaError(f"the producer queue stayed full for {full_s:g} s") from error
                self._producer.poll(_POLL_S)
            except KafkaException as error:
                raise KafkaError(f"cannot produce to {topic}: {error.args[0]}") from error

    def _on_delivery(
        self, tally: _Tally | None, task_id: str, error: ClientError | None, msg: Message
    ) -> None:
        text = None if error is None else f"{msg.topic()}: {error.str()}"
        with self._lock:
            self._total.record(text)
            (tally or self._unreported).record(text)
        if text is not None:  # never on the broker: no outcome will come
            self._give_up(task_id, DeliveryError(f"task {task_id}: {text}", failed=1))

    def _await(
        self, tally: _Tally, timeout_s: float | None, notify: ProgressCallback
    ) -> SubmitReport:
        deadline = time.monotonic() + self._timeout(timeout_s)
        report = self._report(tally)
        while report.unconfirmed > 0 and time.monotonic() < deadline:
            self._producer.flush(_POLL_S)
            report = self._report(tally)
            notify(report)
        return report

    def _report(self, tally: _Tally) -> SubmitReport:
        with self._lock:
            return tally.report()

    def _timeout(self, timeout_s: float | None) -> float:
        return self._wait_s if timeout_s is None else timeout_s


def delivery_timeout_s(config: Mapping[str, ConfigValue]) -> float:
    """Seconds after which librdkafka reports an unconfirmed task as failed."""
    value = config.get("message.timeout.ms", config.get("delivery.timeout.ms", 300_000))
    return float(value) / 1000


def replay_count(task: Task) -> int:
    """How often ``task`` was replayed from the dead letters (its REPLAY_HEADER; 0 if none)."""
    return replay_number(task.headers)


def task_json(task: Task) -> bytes:
    """``task`` as the JSON object ``parse_task_json`` reads back to the same task.

    The payload becomes a JSON string, so it must be UTF-8 text; else EncodeError.
    """
    try:
        payload = task.payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EncodeError(
            f"task {task.task_id!r}: the JSON encoding needs a UTF-8 text payload "
            f"({error.reason} at byte {error.start}); use the Avro encoding"
        ) from error
    fields = {field.name: getattr(task, field.name) for field in dataclasses.fields(task)}
    fields.update(
        payload=payload, headers=dict(task.headers), required_skills=list(fields["required_skills"])
    )
    try:
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, UnicodeEncodeError) as error:
        raise EncodeError(f"task {task.task_id!r} cannot be written as JSON: {error}") from error


def _encoder(encoding: Encoding, codec: RecordCodec) -> Callable[[Task], bytes]:
    if encoding == "json":
        return task_json
    if encoding == "avro":
        return codec.encode
    raise ConfigError(f"encoding must be 'avro' or 'json', got {encoding!r}")


def _producer(config: dict[str, ConfigValue]) -> Producer:
    try:
        return Producer(config)
    except KafkaException as error:
        raise ConfigError(f"invalid producer configuration: {error.args[0]}") from error


def _record_headers(task: Task) -> list[tuple[str, str | bytes | None]] | None:
    value = dict(task.headers).get(REPLAY_HEADER)
    return None if value is None else [(REPLAY_HEADER, value.encode())]


def _raw_output(output: bytes | None) -> bytes | None:
    return output


def _without_reply(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(pair for pair in headers if pair[0] != REPLY_PARTITION_HEADER)


def _failed(error: BaseException) -> futures.Future[TaskOutcome]:
    future: futures.Future[TaskOutcome] = futures.Future()
    future.set_exception(error)
    return future


_NO_RESULTS = _failed(
    ConfigError("this client was made without results: TaskClient(settings, results=True)")
)
"""The outcome of every task sent by a client without results: one error saying so."""


def _ignore(_report: SubmitReport) -> None:
    """A progress callback that does nothing."""
