"""The producer client against the real broker: every task once, on its topic, with its key.

``read_topics`` reads whole topics up to their end offsets (the other broker tests use it too):
after a flush those offsets are final, so "exactly once" is checked without waiting for time.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from streams.client import (
    REPLAY_HEADER,
    DeliveryError,
    EncodeError,
    KafkaError,
    SubmitReport,
    Task,
    TaskClient,
    load_settings,
)
from streams.settings import Settings
from streams.wire import Codec, decode_task

NOW_MS = 1_790_000_000_000
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics``: how many records each ever received."""
    consumer = Consumer({**settings.kafka_config(), "group.id": f"test-{uuid.uuid4().hex[:8]}"})
    try:
        return _ends(consumer, topics)
    finally:
        consumer.close()


def read_topics(settings: Settings, topics: Iterable[str]) -> list[Record]:
    """Every record of ``topics``, reading each partition up to its end offset at the call."""
    consumer = Consumer({**settings.kafka_config(), "group.id": f"test-{uuid.uuid4().hex[:8]}"})
    try:
        ends = _ends(consumer, topics)
        pending = {key for key, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(pending)])
        records: list[Record] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            where = (message.topic() or "", message.partition() or 0)
            records.append(_record(message))
            if (message.offset() or 0) + 1 >= ends[where]:
                pending.discard(where)
        assert not pending, f"partitions not read to their end: {pending}"
        return records
    finally:
        consumer.close()


def _ends(consumer: Consumer, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        for partition in metadata.partitions:
            ends[(topic, partition)] = _high(consumer, TopicPartition(topic, partition))
    return ends


def _high(consumer: Consumer, partition: TopicPartition) -> int:
    """The end offset, asking again while a just-created topic elects its leader."""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)[1]
        except KafkaException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _record(message: Message) -> Record:
    pairs = message.headers() or []
    headers = {key: _bytes(value) for key, value in dict(pairs).items()}
    value = message.value()
    assert value is not None
    return Record(message.topic() or "", message.partition() or 0, message.key(), value, headers)


def _bytes(value: str | bytes | None) -> bytes:
    return value if isinstance(value, bytes) else (value or "").encode()


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _task(index: int) -> Task:
    affinity = f"key-{index % 7}" if index % 3 == 0 else None
    return Task(
        task_id=f"task-{index:04d}",
        type="resize",
        priority=index % 4,
        payload=f"payload {index}".encode(),
        tenant=f"tenant-{index % 5}",
        affinity_key=affinity,
        submitted_at=NOW_MS + index,
    )


def test_a_thousand_tasks_arrive_once_each_on_their_priority_topic_with_their_key(
    topics: Settings,
) -> None:
    tasks = [_task(index) for index in range(1_000)]
    progress: list[SubmitReport] = []
    with TaskClient(topics) as client:
        for task in tasks[:500]:
            client.submit(task)
        client.flush(60)
        report = client.submit_many(tasks[500:], progress.append, timeout_s=60)
        stats = client.stats
    assert report == SubmitReport(queued=500, delivered=500, failed=0)
    assert progress[-1].delivered == 500
    assert [p.delivered for p in progress] == sorted(p.delivered for p in progress)
    assert (stats.queued, stats.delivered, stats.failed) == (1_000, 1_000, 0)

    records = read_topics(topics, topics.topics.all_tasks())
    codec = Codec()
    received: dict[str, list[tuple[Record, Task]]] = {}
    for record in records:
        task = codec.decode(record.value, Task)
        received.setdefault(task.task_id, []).append((record, task))
    assert len(records) == 1_000  # the end offsets add up to exactly one record per task
    assert Counter({task_id: len(copies) for task_id, copies in received.items()}) == Counter(
        {task.task_id: 1 for task in tasks}
    )
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for task in tasks:
        ((record, decoded),) = received[task.task_id]
        assert decoded == task
        assert record.topic == topics.topics.tasks(task.priority)
        assert record.key == (task.affinity_key or task.task_id).encode()
        if task.affinity_key is not None:
            partitions_of_key[f"{record.topic}/{task.affinity_key}"].add(record.partition)
    assert partitions_of_key and all(len(parts) == 1 for parts in partitions_of_key.values())


def test_a_priority_outside_the_levels_is_refused_before_anything_is_sent(
    topics: Settings,
) -> None:
    with TaskClient(topics) as client:
        for priority in (-1, topics.priority_levels):
            bad = Task(task_id="t1", type="x", priority=priority, payload=b"", submitted_at=NOW_MS)
            with pytest.raises(EncodeError, match=r"priority: must be in 0\.\.3"):
                client.submit(bad)
        assert client.stats.queued == 0


def test_flush_raises_a_clear_error_when_the_broker_is_unreachable(topic_prefix: str) -> None:
    unreachable = load_settings(
        bootstrap_servers=f"127.0.0.1:{closed_port()}", topic_prefix=topic_prefix
    )
    quick = {"message.timeout.ms": 1_500, "log_level": 0}
    client = TaskClient(unreachable, producer_config=quick)
    for index in range(3):
        client.submit(_task(index))
    with pytest.raises(DeliveryError, match=r"3 task\(s\) not delivered") as raised:
        client.flush(30)
    assert raised.value.failed == 3 and raised.value.unconfirmed == 0
    assert raised.value.first_error is not None and "timed out" in raised.value.first_error
    assert (client.stats.queued, client.stats.delivered, client.stats.failed) == (3, 0, 3)
    with pytest.raises(DeliveryError, match="was not delivered"):
        client.submit_and_confirm(_task(9), timeout_s=30)
    client.close(30)  # the failures were reported once; nothing is left to report


def test_submit_and_confirm_and_the_json_encoding_round_trip(topics: Settings) -> None:
    task = Task(
        task_id="json-1",
        type="render",
        priority=2,
        payload='{"frames": 12, "name": "é"}'.encode(),
        tenant="acme",
        required_skills=("gpu", "cuda"),
        headers=(("trace", "abc"),),
        deadline=NOW_MS + 5_000,
        cost=2.5,
        submitted_at=NOW_MS,
    )
    with TaskClient(topics, encoding="json") as client:
        client.submit_and_confirm(task, timeout_s=60)
        assert client.stats.delivered == 1
        with pytest.raises(EncodeError, match="UTF-8 text payload"):
            client.submit(Task(task_id="b", type="x", priority=0, payload=b"\xff", submitted_at=0))
    (record,) = read_topics(topics, [topics.topics.tasks(2)])
    assert record.value.startswith(b"{")
    assert decode_task(record.value, codec=Codec(), now_ms=0) == task


def test_submit_new_and_the_replay_header_is_also_a_record_header(topics: Settings) -> None:
    replayed = Task(
        task_id="r-1",
        type="x",
        priority=0,
        payload=b"",
        submitted_at=NOW_MS,
        headers=((REPLAY_HEADER, "2"),),
    )
    with TaskClient(topics) as client:
        fresh = client.submit_new(type="resize", priority=1, payload=b"p", tenant="acme").task
        client.submit(replayed)
    assert fresh.priority == 1 and fresh.tenant == "acme" and fresh.task_id
    records = {r.key: r for r in read_topics(topics, topics.topics.all_tasks())}
    assert records[fresh.task_id.encode()].topic == topics.topics.tasks(1)
    assert records[fresh.task_id.encode()].headers == {}
    assert records[b"r-1"].headers == {REPLAY_HEADER: b"2"}
    with pytest.raises(KafkaError, match="closed"):
        client.submit(replayed)


def test_a_full_local_queue_makes_submit_wait_instead_of_failing(topics: Settings) -> None:
    tasks = [_task(index) for index in range(300)]
    tiny_queue = {"queue.buffering.max.messages": 10, "linger.ms": 0}
    with TaskClient(topics, producer_config=tiny_queue) as client:
        report = client.submit_many(tasks, timeout_s=60)
    assert (report.delivered, report.failed) == (300, 0)
    assert len(read_topics(topics, topics.topics.all_tasks())) == 300
