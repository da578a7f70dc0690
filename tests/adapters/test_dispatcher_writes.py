"""The dispatcher's writes on the real broker: a follow-up runs only once its record is
confirmed, a group's follow-up once every record of it is, and a closed ``Writes`` runs none."""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition

from streams.adapters.dispatcher.outputs import Outputs
from streams.adapters.dispatcher.writes import Pending, Writes, all_of
from streams.settings import Settings

TIMEOUT_S = 30.0


def _records(settings: Settings, topic: str, partition: int) -> list[bytes]:
    consumer = Consumer(
        {**settings.kafka_config(), "group.id": f"{topic}-check", "enable.auto.commit": False}
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        consumer.assign([TopicPartition(topic, partition, 0)])
        found: list[bytes] = []
        while len(found) < high:
            message = consumer.poll(5.0)
            assert message is not None, f"only {len(found)} of {high} records read"
            assert message.error() is None
            found.append(bytes(message.value() or b""))
        return found
    finally:
        consumer.close()


async def _write_all(settings: Settings, values: list[bytes]) -> tuple[list[bytes], bool]:
    """Write ``values`` to the dlq topic's partition 0; the order their follow-ups ran in, and
    whether the group's follow-up ran after all of them."""
    outputs = Outputs(settings, asyncio.get_running_loop())
    writes = Writes(outputs, asyncio.get_running_loop())
    confirmed: list[bytes] = []
    group_done = asyncio.Event()
    group_saw: list[int] = []
    try:
        pending = [
            writes.write(
                settings.topics.dlq,
                value,
                key="k",
                partition=0,
                then=lambda value=value: confirmed.append(value),  # type: ignore[misc]
            )
            for value in values
        ]
        assert writes.outstanding() == len(values)

        def group() -> None:
            group_saw.append(len(confirmed))
            group_done.set()

        all_of(pending).then(group)
        await asyncio.wait_for(group_done.wait(), TIMEOUT_S)
        assert writes.outstanding() == 0
        return confirmed, group_saw == [len(values)]
    finally:
        writes.close()
        outputs.close()


def test_follow_ups_run_once_the_broker_confirmed(topics: Settings) -> None:
    values = [b"v%d" % index for index in range(50)]

    confirmed, group_after_all = asyncio.run(_write_all(topics, values))

    assert confirmed == values  # one partition: confirmed in the order written
    assert group_after_all
    assert _records(topics, topics.topics.dlq, 0) == values


def test_a_group_with_nothing_left_runs_at_once(topics: Settings) -> None:
    async def scenario() -> list[str]:
        outputs = Outputs(topics, asyncio.get_running_loop())
        writes = Writes(outputs, asyncio.get_running_loop())
        ran: list[str] = []
        try:
            all_of([]).then(lambda: ran.append("empty"))
            done = asyncio.Event()
            first = writes.write(
                topics.topics.dlq, b"x", key="k", partition=0, then=lambda: done.set()
            )
            await asyncio.wait_for(done.wait(), TIMEOUT_S)
            all_of([first]).then(lambda: ran.append("confirmed"))
            return ran
        finally:
            writes.close()
            outputs.close()

    assert asyncio.run(scenario()) == ["empty", "confirmed"]


def test_a_closed_writes_runs_no_follow_up(topics: Settings) -> None:
    async def scenario() -> list[str]:
        outputs = Outputs(topics, asyncio.get_running_loop())
        closed = Writes(outputs, asyncio.get_running_loop())
        still_open = Writes(outputs, asyncio.get_running_loop())
        ran: list[str] = []
        done = asyncio.Event()
        try:
            closed.write(
                topics.topics.dlq, b"x", key="k", partition=0, then=lambda: ran.append("x")
            )
            closed.close()
            # written after it to the same partition: confirmed (and reported) after it
            still_open.write(topics.topics.dlq, b"y", key="k", partition=0, then=done.set)
            await asyncio.wait_for(done.wait(), TIMEOUT_S)
            return ran
        finally:
            still_open.close()
            outputs.close()

    assert asyncio.run(scenario()) == []


def test_all_of_waits_for_every_pending_and_none_is_nothing_to_wait_for() -> None:
    first, second = Pending(), Pending()
    ran: list[str] = []
    all_of([first, None, second]).then(lambda: ran.append("both"))
    first.finish()
    assert ran == []
    second.finish()
    assert ran == ["both"]
    assert all_of([None]).done and all_of([]).done
