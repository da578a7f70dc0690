"""Bad records written straight to every input topic of the dispatcher (the task topics, a retry
tier, results), as a broken or hostile producer would: every one ends in the dead letters with
its reason and an error saying what is wrong, while good tasks flow past them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient
from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import Codec, Task
from tests.adapters.test_dispatcher_support import with_state
from tests.e2e.test_pipeline_support import pipeline, until_dead, until_results, work

AVRO_MAGIC = b"\xc3\x01"
GOOD = 20

garbage = st.binary(max_size=64).filter(lambda data: not data.lstrip().startswith(b"{"))
avro_like = st.binary(min_size=0, max_size=40).map(lambda body: AVRO_MAGIC + body)
broken_json = st.text(max_size=30).map(lambda text: ("{" + text).encode())
wrong_fields = st.one_of(
    st.fixed_dictionaries({"type": st.integers() | st.none() | st.lists(st.integers())}),
    st.fixed_dictionaries({"type": st.just("work"), "priority": st.integers(4, 10**6)}),
    st.fixed_dictionaries({"type": st.just("work"), "ttl_ms": st.integers(max_value=-1)}),
    st.fixed_dictionaries({"type": st.just("work"), "max_attempts": st.integers(max_value=0)}),
    st.fixed_dictionaries({"type": st.just("work"), "unknown": st.text(max_size=5)}),
    st.fixed_dictionaries({"type": st.just(""), "priority": st.just(1)}),
).map(lambda fields: json.dumps(fields).encode())
too_large = st.integers(600, 5_000).map(
    lambda size: json.dumps({"type": "work", "task_id": "toolarge" + "x" * size}).encode()
)
on_task_topics = st.tuples(
    st.just("tasks"), st.one_of(garbage, avro_like, broken_json, wrong_fields, too_large)
)
on_retry_tier = st.tuples(st.just("retry"), st.one_of(garbage, avro_like, broken_json))
on_results = st.tuples(st.just("results"), st.one_of(garbage, avro_like, broken_json))
BAD = st.lists(st.one_of(on_task_topics, on_retry_tier, on_results), min_size=30, max_size=60)


def _settings(topics: Settings, tmp_path: Path) -> Settings:
    return with_state(topics, tmp_path / "state").model_copy(update={"max_task_id_bytes": 512})


def _write(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    names = settings.topics
    topic_of = {"tasks": names.tasks(1), "retry": names.retry(0), "results": names.results}
    producer = Producer(settings.kafka_config())
    for kind, value in records:
        producer.produce(topic_of[kind], value)
    assert producer.flush(30) == 0


@settings(
    max_examples=1,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=BAD)
def test_every_bad_record_is_dead_lettered_with_its_reason_while_good_tasks_flow(
    topics: Settings, tmp_path: Path, bad: list[tuple[str, bytes]]
) -> None:
    settings_ = _settings(topics, tmp_path)
    create_topics(settings_)
    # a retry record without its due-time header is bad too, however valid the task
    valid = Codec().encode(Task(task_id="r", type="work", priority=1, payload=b"", submitted_at=1))
    records = [*bad, ("retry", valid)]

    async def scenario() -> list[Any]:
        async with pipeline(settings_, [4]):
            with TaskClient(settings_) as client:
                good = [
                    client.submit_new(type="work", priority=1, payload=work()).task
                    for _ in range(GOOD // 2)
                ]
                await asyncio.to_thread(_write, settings_, records)
                good += [
                    client.submit_new(type="work", priority=1, payload=work()).task
                    for _ in range(GOOD // 2)
                ]
            await until_results(settings_, {task.task_id for task in good})  # they flowed
            return await until_dead(settings_, len(records))

    letters = asyncio.run(scenario())
    assert len(letters) == len(records)  # every one, once
    reasons = {DeadLetterReason.MALFORMED, DeadLetterReason.TOO_LARGE}
    assert all(letter.reason in reasons and letter.error for letter in letters)
    too_large = sum(1 for kind, value in bad if kind == "tasks" and b'"toolarge' in value)
    assert sum(letter.reason is DeadLetterReason.TOO_LARGE for letter in letters) == too_large
