"""Every record type survives a trip through the real broker with confluent-kafka.

Records are produced to the topic the architecture gives them (idempotent producer, acks=all),
consumed back and decoded; a JSON task written by a plain producer (as kcat or a console
producer would) decodes to the same task.
"""

from __future__ import annotations

import json
import uuid

from confluent_kafka import Consumer, Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.settings import Settings
from streams.wire import Codec, DeadLetter, Task, decode_task
from streams.wire.records import (
    AgentHeartbeat,
    AgentRegistration,
    Assignment,
    TaskResult,
    WireRecord,
)
from tests.wire.strategies import (
    assignments,
    dead_letters,
    heartbeats,
    registrations,
    task_results,
    valid_tasks,
)

NOW_MS = 1_790_000_000_000


def _producer(settings: Settings) -> Producer:
    return Producer(
        {**settings.kafka_config(), "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )


def _consume(settings: Settings, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        for _ in range(300):
            message = consumer.poll(0.2)
            if message is None:
                if len(values) >= count:
                    break
                continue
            assert message.error() is None, message.error()
            value = message.value()
            assert value is not None
            values.append(value)
    finally:
        consumer.close()
    return values


def _topic_for(record: WireRecord, settings: Settings) -> str:
    names = settings.topics
    return {
        Task: names.tasks(0),
        Assignment: names.dispatch,
        TaskResult: names.results,
        AgentHeartbeat: names.heartbeats,
        DeadLetter: names.dlq,
        AgentRegistration: names.registry,
    }[type(record)]


@settings(
    max_examples=1,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batch=st.tuples(
        st.lists(valid_tasks(), min_size=3, max_size=3),
        st.lists(assignments(), min_size=3, max_size=3),
        st.lists(task_results(), min_size=3, max_size=3),
        st.lists(heartbeats(), min_size=3, max_size=3),
        st.lists(dead_letters(), min_size=3, max_size=3),
        st.lists(registrations(), min_size=3, max_size=3),
    )
)
def test_every_record_type_round_trips_through_the_broker(
    topics: Settings, batch: tuple[list[WireRecord], ...]
) -> None:
    codec = Codec()
    producer = _producer(topics)
    records = [record for group in batch for record in group]
    for record in records:
        key = record.agent_id if isinstance(record, AgentRegistration) else None  # compacted
        producer.produce(_topic_for(record, topics), codec.encode(record), key=key)
    assert producer.flush(30) == 0
    for group in batch:
        topic = _topic_for(group[0], topics)
        received = [codec.decode(raw, type(group[0])) for raw in _consume(topics, topic, 3)]
        assert sorted(map(repr, received)) == sorted(map(repr, group))


def test_plain_json_producer_is_a_client(topics: Settings) -> None:
    producer = Producer(topics.kafka_config())  # no codec: what kcat would send
    body = {"type": "resize", "priority": 2, "payload": {"work_ms": 5}, "tenant": "acme"}
    producer.produce(topics.topics.tasks(2), json.dumps(body).encode())
    assert producer.flush(30) == 0
    (raw,) = _consume(topics, topics.topics.tasks(2), 1)
    task = decode_task(raw, codec=Codec(), now_ms=NOW_MS, topic_priority=2)
    assert (task.type, task.priority, task.tenant) == ("resize", 2, "acme")
    assert json.loads(task.payload) == {"work_ms": 5}
    assert task.submitted_at == NOW_MS and task.task_id
