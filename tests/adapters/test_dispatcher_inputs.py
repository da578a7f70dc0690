"""The dispatcher's input decoding without a broker: what a held task's token keeps of Faust's
event (the message, for the ack) and that the ack still goes through Faust's message."""

from __future__ import annotations

import gc
import weakref

import faust
from faust.types.tuples import TP, ConsumerMessage

from streams.adapters.dispatcher.acks import OrderedAcks, Token
from streams.adapters.dispatcher.inputs import Decoder, MessageAck
from streams.settings import load_settings
from streams.wire import Task, TaskResult
from streams.wire.codec import Codec


class _Consumer:
    def __init__(self) -> None:
        self.acked: list[ConsumerMessage] = []

    def ack(self, message: ConsumerMessage) -> bool:
        self.acked.append(message)
        return True


class _App:
    def __init__(self) -> None:
        self.consumer = _Consumer()


class _Sink:
    def __init__(self) -> None:
        self.tasks: list[tuple[Task, Token]] = []
        self.malformed_raw: list[bytes] = []

    def task_read(self, task: Task, token: Token) -> None:
        self.tasks.append((task, token))

    def retry_read(self, task: Task, due_ms: int, token: Token) -> None:
        raise AssertionError("no retries here")

    def result_read(self, result: TaskResult, token: Token) -> None:
        raise AssertionError("no results here")

    def malformed(self, raw: bytes, error: str, token: Token) -> None:
        self.malformed_raw.append(raw)


def _event(app: _App, topic: str, offset: int, value: bytes) -> faust.Event:
    key = f"k{offset}".encode()
    message = ConsumerMessage(topic, 0, offset, 0.0, 0, (), key, value, None, tp=TP(topic, 0))
    return faust.Event(app, key, value, message.headers, message)  # type: ignore[arg-type]


def _decoder() -> tuple[Decoder, OrderedAcks, _Sink, str, Codec]:
    settings = load_settings()
    codec, acks, sink = Codec(), OrderedAcks(), _Sink()
    return Decoder(settings, codec, acks, sink), acks, sink, settings.topics.tasks(0), codec


def test_a_held_task_keeps_faust_message_but_not_the_event() -> None:
    decoder, acks, sink, topic, codec = _decoder()
    app = _App()
    task = Task(task_id="t1", type="x", priority=0, payload=b"p", submitted_at=1)
    event = _event(app, topic, 7, codec.encode(task))
    message = event.message
    gone = weakref.ref(event)
    decoder.task(event)
    del event
    gc.collect()
    assert gone() is None  # the token does not keep the event alive
    [(read, token)] = sink.tasks
    assert read == task
    assert (token.topic, token.partition, token.offset) == (topic, 0, 7)
    assert token.subject is message and isinstance(token.ack, MessageAck)
    assert message.value is None and message.key is None  # the task holds what it needs
    acks.done(token)
    assert app.consumer.acked == [message]  # through Message.ack to the consumer, as Faust does


def test_tokens_share_one_ack_and_ack_in_offset_order() -> None:
    decoder, acks, sink, topic, codec = _decoder()
    app = _App()
    for offset in range(3):
        task = Task(task_id=f"t{offset}", type="x", priority=0, payload=b"", submitted_at=1)
        decoder.task(_event(app, topic, offset, codec.encode(task)))
    tokens = [token for _, token in sink.tasks]
    assert len({id(token.ack) for token in tokens}) == 1
    acks.done(tokens[2])
    acks.done(tokens[1])
    assert app.consumer.acked == []
    acks.done(tokens[0])
    assert [message.offset for message in app.consumer.acked] == [0, 1, 2]


def test_malformed_bytes_still_reach_the_dead_letters_whole() -> None:
    decoder, acks, sink, topic, _ = _decoder()
    app = _App()
    decoder.task(_event(app, topic, 0, b"\xc3\x01garbage"))
    assert sink.malformed_raw == [b"\xc3\x01garbage"]
    assert acks.pending() == 1


def test_an_event_with_an_ack_of_its_own_is_acked_by_it() -> None:
    decoder, acks, sink, topic, codec = _decoder()
    acked: list[int] = []

    class OwnAck(faust.Event):  # type: ignore[misc]
        def ack(self) -> bool:
            acked.append(self.message.offset)
            return True

    task = Task(task_id="t1", type="x", priority=0, payload=b"", submitted_at=1)
    value = codec.encode(task)
    message = ConsumerMessage(topic, 0, 4, 0.0, 0, (), b"k", value, None, tp=TP(topic, 0))
    decoder.task(OwnAck(_App(), b"k", value, (), message))  # type: ignore[arg-type]
    [(_, token)] = sink.tasks
    assert message.value == value  # not Faust's standard event: left as it is
    acks.done(token)
    assert acked == [4]


def test_plain_and_shared_acks_mix_in_one_partition() -> None:
    acked: list[object] = []
    acks = OrderedAcks()
    plain = acks.track("t", 0, 0, lambda: acked.append("plain"))
    shared = acks.track("t", 0, 1, acked.append, "subject")
    acks.done(shared)
    assert acked == []
    acks.done(plain)
    assert acked == ["plain", "subject"]
