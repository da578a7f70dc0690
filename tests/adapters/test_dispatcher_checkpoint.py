"""The dispatcher's outputs and checkpoints on the real broker: an epoch is confirmed only once
every record of it is on the broker, and a checkpoint gives its offsets to commit only once the
records written before it and its state records are there."""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition

from streams.adapters.dispatcher.checkpoint import Checkpointer
from streams.adapters.dispatcher.outputs import Outputs
from streams.adapters.dispatcher.state import ShardState
from streams.settings import Settings
from streams.wire import Codec

TIMEOUT_S = 30.0
CODEC = Codec()


def _records(settings: Settings, topic: str, partition: int) -> list[bytes | None]:
    """Every record of one partition, as it is on the broker now."""
    consumer = Consumer(
        {**settings.kafka_config(), "group.id": f"{topic}-check", "enable.auto.commit": False}
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        consumer.assign([TopicPartition(topic, partition, 0)])
        found: list[bytes | None] = []
        while len(found) < high:
            message = consumer.poll(5.0)
            assert message is not None, f"only {len(found)} of {high} records read"
            assert message.error() is None
            value = message.value()
            found.append(None if value is None else bytes(value))
        return found
    finally:
        consumer.close()


def test_an_epoch_is_confirmed_once_every_record_of_it_is_on_the_broker(topics: Settings) -> None:
    values = [b"v%d" % index for index in range(50)]

    async def scenario() -> tuple[list[bytes | None], list[bytes | None]]:
        outputs = Outputs(topics, asyncio.get_running_loop())
        try:
            for value in values:
                outputs.send(topics.topics.dlq, value, key=b"k", partition=0)
            epoch = outputs.close_epoch()
            outputs.send(topics.topics.dlq, b"later", key=b"k", partition=1)
            confirmed = asyncio.Event()
            outputs.when_confirmed(epoch, confirmed.set)
            await asyncio.wait_for(confirmed.wait(), TIMEOUT_S)
            seen = await asyncio.to_thread(_records, topics, topics.topics.dlq, 0)
            ran: list[bytes | None] = []
            outputs.when_confirmed(epoch, lambda: ran.append(b"at once"))  # already confirmed
            return seen, ran
        finally:
            outputs.close()

    seen, ran = asyncio.run(scenario())
    assert seen == values
    assert ran == [b"at once"]


def test_a_checkpoint_gives_its_offsets_once_outputs_and_state_are_written(
    topics: Settings,
) -> None:
    offsets = [TopicPartition(topics.topics.results, 0, 7)]

    async def scenario() -> tuple[list[TopicPartition], list[bytes | None], list[bytes | None]]:
        outputs = Outputs(topics, asyncio.get_running_loop())
        checkpointer = Checkpointer(
            outputs, codec=CODEC, changelog=topics.topics.state, dedupe_window=100, clock=lambda: 1
        )
        try:
            outputs.send(topics.topics.dlq, b"before", key=b"k", partition=0)
            state = ShardState(0, ended=["t1", "t2"])
            done = checkpointer.take({0: state}, lambda: offsets)
            assert done is not None and checkpointer.under_way
            assert checkpointer.take({0: state}, lambda: offsets) is None  # one at a time
            given = await asyncio.wait_for(done, TIMEOUT_S)
            written = await asyncio.to_thread(_records, topics, topics.topics.dlq, 0)
            state_records = await asyncio.to_thread(_records, topics, topics.topics.state, 0)
            return given, written, state_records
        finally:
            outputs.close()

    given, written, state_records = asyncio.run(scenario())
    assert given == offsets
    assert written == [b"before"]
    assert len(state_records) == 1 and state_records[0] is not None  # the ended keys


def test_a_closed_outputs_runs_no_follow_up(topics: Settings) -> None:
    async def scenario() -> list[str]:
        closing = Outputs(topics, asyncio.get_running_loop())
        other = Outputs(topics, asyncio.get_running_loop())
        ran: list[str] = []
        done = asyncio.Event()
        try:
            closing.send(
                topics.topics.dlq, b"x", key=b"k", partition=0, then=lambda: ran.append("x")
            )
            closing.close()
            other.send(topics.topics.dlq, b"y", key=b"k", partition=0, then=done.set)
            await asyncio.wait_for(done.wait(), TIMEOUT_S)
            await asyncio.sleep(0.2)
            return ran
        finally:
            other.close()

    assert asyncio.run(scenario()) == []
