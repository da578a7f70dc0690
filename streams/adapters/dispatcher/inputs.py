"""Faust agents on the task topics, the retry tiers and ``results``; all ``noack()``.

Each event is tracked for its ordered acknowledgement, decoded, and handed to the sink (the
loop). Bytes that are no task or result become a MALFORMED dead letter and the rest flows on.
An unexpected error is logged and leaves its event unacked (read again after a restart)
rather than raised: an exception in a Faust agent would ack the event and drop it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import faust

from streams.adapters.dispatcher.acks import OrderedAcks, Token
from streams.adapters.dispatcher.app import app_id
from streams.adapters.dispatcher.executor import DUE_HEADER
from streams.errors import DecodeError
from streams.settings import Settings
from streams.wire import Task, TaskResult, decode_task, validate_task
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)


class InputSink(Protocol):
    """Where decoded inputs go (the loop)."""

    def task_read(self, task: Task, token: Token) -> None: ...

    def retry_read(self, task: Task, due_ms: int, token: Token) -> None: ...

    def result_read(self, result: TaskResult, token: Token) -> None: ...

    def malformed(self, raw: bytes, error: str, token: Token) -> None: ...


class Decoder:
    """Turns each kind of input event into a call on the sink."""

    def __init__(
        self, settings: Settings, codec: RecordCodec, acks: OrderedAcks, sink: InputSink
    ) -> None:
        self._codec = codec
        self._acks = acks
        self._sink = sink
        self._levels = settings.priority_levels
        topics = settings.topics
        self._priority = {topics.tasks(level): level for level in range(self._levels)}
        self._acker: MessageAck | None = None

    def task(self, event: faust.EventT[bytes]) -> None:
        token, raw = self._track(event)
        try:
            task = decode_task(
                raw,
                codec=self._codec,
                now_ms=time.time_ns() // 1_000_000,
                levels=self._levels,
                topic_priority=self._priority.get(token.topic),
            )
        except DecodeError as error:
            self._sink.malformed(raw, str(error), token)
            return
        self._sink.task_read(task, token)

    def retry(self, event: faust.EventT[bytes]) -> None:
        token, raw = self._track(event)
        try:
            task = validate_task(self._codec.decode(raw, Task), levels=self._levels, raw=raw)
            due_ms = _due_ms(event.headers)
        except (DecodeError, ValueError) as error:
            self._sink.malformed(raw, str(error), token)
            return
        self._sink.retry_read(task, due_ms, token)

    def result(self, event: faust.EventT[bytes]) -> None:
        token, raw = self._track(event)
        try:
            result = self._codec.decode(raw, TaskResult)
        except DecodeError as error:
            self._sink.malformed(raw, str(error), token)
            return
        self._sink.result_read(result, token)

    def _track(self, event: faust.EventT[bytes]) -> tuple[Token, bytes]:
        """Track ``event`` for its ordered ack; its value as bytes.

        A held task's token lives as long as the task waits, so it keeps only what the ack
        needs: for Faust's own events, the message and one shared :class:`MessageAck` (not the
        event). The message no longer holds the raw key and value either: the decoded record
        (or, for a dead letter, ``raw``) carries what is needed of them, Faust reads neither
        once the event is delivered (each input topic has this one agent), and an unacked
        message lives until its task is dispatched.
        """
        message = event.message
        value = event.value
        raw = value if isinstance(value, bytes) else bytes(value or b"")
        if type(event).ack is _EVENT_ACK:
            acker = self._acker
            if acker is None or acker.app is not event.app:
                acker = self._acker = MessageAck(event.app)
            token = self._acks.track(
                message.topic, message.partition, message.offset, acker, message
            )
            message.key = message.value = None
        else:
            token = self._acks.track(message.topic, message.partition, message.offset, event.ack)
        return token, raw


_EVENT_ACK = faust.Event.ack


class MessageAck:
    """What ``faust.Event.ack`` does, ``message.ack(app.consumer)``, as one callable shared by
    every token: a held task's token then keeps Faust's message (needed for the offset
    bookkeeping) but not the event, its headers dict and a bound method."""

    __slots__ = ("app",)

    def __init__(self, app: faust.types.AppT) -> None:
        self.app = app

    def __call__(self, message: faust.types.Message) -> bool:
        return message.ack(self.app.consumer)


def attach_inputs(
    app: faust.App, settings: Settings, decoder: Decoder, intake: asyncio.Event
) -> None:
    """Declare the three input agents on ``app`` (they start with it); the tasks agent takes
    an event only while ``intake`` is set (back-pressure)."""
    names, prefix = settings.topics, app_id(settings)
    _agent(app, f"{prefix}.tasks", _topic(app, names.all_tasks()), decoder.task, intake)
    _agent(app, f"{prefix}.retries", _topic(app, names.all_retries()), decoder.retry)
    _agent(app, f"{prefix}.results", _topic(app, [names.results]), decoder.result)


def _topic(app: faust.App, names: list[str]) -> faust.TopicT:
    return app.topic(*names, key_serializer="raw", value_serializer="raw", allow_empty=True)


def _agent(
    app: faust.App,
    name: str,
    topic: faust.TopicT,
    handle: Callable[[faust.EventT[bytes]], None],
    gate: asyncio.Event | None = None,
) -> None:
    async def read(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            if gate is not None:
                await gate.wait()
            try:
                handle(event)
            except Exception:  # a bug must not ack (drop) the event: leave it unacked
                log.exception("dispatcher input %s: event left unacked", name)

    app.agent(topic, name=name)(read)


def _due_ms(headers: Any) -> int:
    """The retry record's due time from its headers; ValueError if it has none."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for key, value in pairs:
        if key == DUE_HEADER:
            return int(bytes(value).decode("ascii"))
    raise ValueError(f"retry record without a {DUE_HEADER} header")
