"""Bad records written straight to every input topic of the dispatcher (the task topics, a retry
tier, results), as a broken or hostile producer would: every one ends in the dead letters with
its reason and an error saying what is wrong, while good tasks flow past them. Each run writes
every kind of bad record (BAD) and some hypothesis makes up (DRAWN), and matches each to its
dead letter by topic and offset."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient
from streams.adapters.kafka import codec_for
from streams.core.model import DeadLetterReason
from streams.errors import DecodeError
from streams.settings import Settings
from streams.wire import Codec, DeadLetter, ResultBatch, Task
from tests.adapters.test_dispatcher_support import with_state
from tests.e2e.test_pipeline_support import (
    PIPELINE_WAIT_S,
    pipeline,
    read_values,
    until_dead,
    work,
)

AVRO_MAGIC = b"\xc3\x01"
GOOD = 20
MALFORMED, TOO_LARGE = DeadLetterReason.MALFORMED, DeadLetterReason.TOO_LARGE


def _json(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


UNREADABLE = [
    b"",
    b"\x00\xff\x10 not a record",
    b"plain text",
    AVRO_MAGIC,  # the marker, then nothing
    AVRO_MAGIC + b"\x00" * 8,  # a fingerprint of no schema
    AVRO_MAGIC + bytes(range(40)),
    b"{",
    b'{"type": "work", "priority": ',
]
"""Records no component can decode, whatever topic they are on."""
BAD: list[tuple[str, bytes, DeadLetterReason]] = [
    *[(kind, value, MALFORMED) for kind in ("tasks", "retry", "results") for value in UNREADABLE],
    ("tasks", _json(type=5), MALFORMED),
    ("tasks", _json(type=None), MALFORMED),
    ("tasks", _json(type=[1, 2]), MALFORMED),
    ("tasks", _json(type=""), MALFORMED),
    ("tasks", _json(type="work", priority=4), MALFORMED),
    ("tasks", _json(type="work", priority=10**6), MALFORMED),
    ("tasks", _json(type="work", ttl_ms=-1), MALFORMED),
    ("tasks", _json(type="work", max_attempts=0), MALFORMED),
    ("tasks", _json(type="work", unknown="x"), MALFORMED),
    ("tasks", _json(type="work", task_id="toolarge" + "x" * 600), TOO_LARGE),
    ("tasks", _json(type="work", task_id="toolarge" + "x" * 5_000), TOO_LARGE),
    # a retry record without its due-time header is bad too, however valid the task
    (
        "retry",
        Codec().encode(Task(task_id="r", type="work", priority=1, payload=b"", submitted_at=1)),
        MALFORMED,
    ),
]
"""Each kind of bad record, the topic it is written to and the reason it must be dead-lettered
for: written in every run."""
Expected = dict[tuple[str, int, int], DeadLetterReason]

garbage = st.binary(max_size=64).filter(lambda data: not data.lstrip().startswith(b"{"))
avro_like = st.binary(max_size=40).map(lambda body: AVRO_MAGIC + body)
never_closed = st.text(alphabet=st.characters(blacklist_characters="}"), max_size=30)
broken_json = never_closed.map(lambda text: ("{" + text).encode())
wrong_fields = st.one_of(
    st.fixed_dictionaries({"type": st.integers() | st.none() | st.lists(st.integers())}),
    st.fixed_dictionaries({"type": st.just("work"), "priority": st.integers(4, 10**6)}),
    st.fixed_dictionaries({"type": st.just("work"), "ttl_ms": st.integers(max_value=-1)}),
    st.fixed_dictionaries({"type": st.just("work"), "max_attempts": st.integers(max_value=0)}),
    st.fixed_dictionaries({"type": st.just("work"), "unknown": st.text(max_size=5)}),
).map(lambda fields: json.dumps(fields).encode())
too_large = st.integers(600, 5_000).map(lambda size: _json(type="work", task_id="x" * size))
unreadable = st.one_of(garbage, avro_like, broken_json)
DRAWN = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["tasks", "retry", "results"]), unreadable, st.just(MALFORMED)),
        st.tuples(st.just("tasks"), wrong_fields, st.just(MALFORMED)),
        st.tuples(st.just("tasks"), too_large, st.just(TOO_LARGE)),
    ),
    min_size=10,
    max_size=30,
)
"""Bad records hypothesis makes up, besides BAD."""


def _settings(topics: Settings, folder: Path) -> Settings:
    return with_state(topics, folder / "state").model_copy(update={"max_task_id_bytes": 512})


def _write(settings: Settings, records: list[tuple[str, bytes, DeadLetterReason]]) -> Expected:
    """Write ``records``; the reason each must be dead-lettered for, by (topic, offset)."""
    names = settings.topics
    topic_of = {"tasks": names.tasks(1), "retry": names.retry(0), "results": names.results}
    producer = Producer(settings.kafka_config())
    expected: Expected = {}
    for kind, value, reason in records:

        def written(error: Any, message: Any, reason: DeadLetterReason = reason) -> None:
            assert error is None, error
            expected[(message.topic(), message.partition(), message.offset())] = reason

        producer.produce(topic_of[kind], value, partition=0, on_delivery=written)
    assert producer.flush(30) == 0
    return expected


@settings(
    max_examples=3,  # the first is hypothesis' simplest (empty records), the others at random
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=DRAWN)
def test_every_bad_record_is_dead_lettered_with_its_reason_while_good_tasks_flow(
    topics: Settings, tmp_path: Path, drawn: list[tuple[str, bytes, DeadLetterReason]]
) -> None:
    run = uuid.uuid4().hex[:6]  # each example on topics and state of its own
    settings_ = _settings(
        topics.model_copy(update={"topic_prefix": f"{topics.topic_prefix}{run}."}),
        tmp_path / run,
    )
    create_topics(settings_)
    bad = [*BAD, *drawn]

    async def scenario() -> tuple[Expected, list[DeadLetter]]:
        async with pipeline(settings_, [4]):
            with TaskClient(settings_) as client:
                good = [
                    client.submit_new(type="work", priority=1, payload=work()).task
                    for _ in range(GOOD // 2)
                ]
                expected = await asyncio.to_thread(_write, settings_, bad)
                good += [
                    client.submit_new(type="work", priority=1, payload=work()).task
                    for _ in range(GOOD // 2)
                ]
            await _until_ran(settings_, {task.task_id for task in good})  # they flowed
            return expected, await until_dead(settings_, len(bad))

    expected, letters = asyncio.run(scenario())
    found = {
        (letter.source_topic, letter.source_partition, letter.source_offset): letter.reason
        for letter in letters
    }
    assert len(letters) == len(bad)  # every one, once
    assert found == expected
    assert all(letter.error for letter in letters)


async def _until_ran(settings: Settings, expected: set[str]) -> None:
    """Once each of ``expected`` has a result; the bad records on ``results`` are skipped."""
    codec = codec_for(settings)
    deadline = time.monotonic() + PIPELINE_WAIT_S
    while True:
        done = set()
        for value in await asyncio.to_thread(read_values, settings, settings.topics.results):
            with contextlib.suppress(DecodeError):
                done |= {result.task_id for result in codec.decode(value, ResultBatch).results}
        if expected <= done:
            return
        assert time.monotonic() < deadline, f"{len(expected - done)} task(s) without a result"
        await asyncio.sleep(0.5)
