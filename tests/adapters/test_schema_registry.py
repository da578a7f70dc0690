"""The Confluent wire format through confluent-kafka's registry client, against a registry on
127.0.0.1 that answers as Confluent's does (``tests/registry_stub.py`` says why it is a stand-in).
"""

from __future__ import annotations

import copy
import io
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.adapters.kafka import codec_for
from streams.adapters.registry import ConfluentRegistry
from streams.errors import ConfigError, DecodeError, EncodeError, RegistryError
from streams.settings import Settings
from streams.wire import (
    AgentHeartbeat,
    Codec,
    ConfluentCodec,
    Task,
    TaskResult,
    TaskStatus,
    WireRecord,
    decode_task,
    topic_name_strategy,
)
from streams.wire.schemas import current_schemas
from tests.registry_stub import RecordedRegistry, recorded_registry
from tests.wire.previous import heartbeat, schemas_with_previous
from tests.wire.strategies import ANY_RECORD, tasks


@pytest.fixture(scope="module")
def registry() -> Iterator[RecordedRegistry]:
    with recorded_registry() as state:
        yield state


def _codec(registry: RecordedRegistry, **options: Any) -> ConfluentCodec:
    return ConfluentCodec(ConfluentRegistry(registry.url), **options)


@settings(max_examples=50)
@given(record=ANY_RECORD)
def test_every_record_round_trips_through_the_registry(
    registry: RecordedRegistry, record: WireRecord
) -> None:
    writer, reader = _codec(registry), _codec(registry)
    assert reader.decode(writer.encode(record), type(record)) == record


def test_the_framing_is_magic_zero_and_the_big_endian_schema_id(registry: RecordedRegistry) -> None:
    task = Task.new(type="t", priority=0, now_ms=1)
    data = _codec(registry).encode(task)
    schema_id = int.from_bytes(data[1:5], "big")
    assert data[0] == 0
    assert json.loads(registry.texts[schema_id])["name"] == "taskd.Task"
    assert schema_id in registry.subjects["taskd.Task"]  # record name strategy by default
    assert Codec().encode(task)[10:] == data[5:]  # the same Avro body as single-object


def test_the_topic_name_strategy_registers_under_topic_value(registry: RecordedRegistry) -> None:
    codec = _codec(registry, subject_strategy=topic_name_strategy("taskd.tasks.p0"))
    codec.encode(Task.new(type="t", priority=0, now_ms=1))
    assert "taskd.tasks.p0-value" in registry.subjects


def test_schemas_are_registered_and_fetched_once(registry: RecordedRegistry) -> None:
    writer, reader = _codec(registry), _codec(registry)
    before = len(registry.requests)
    encoded = [writer.encode(Task.new(type="t", priority=0, now_ms=n)) for n in range(5)]
    decoded = [reader.decode(data, Task) for data in encoded]
    assert [task.submitted_at for task in decoded] == list(range(5))
    assert [r.split()[0] for r in registry.requests[before:]] == ["POST", "GET"]


def test_an_older_registered_task_schema_decodes_with_defaults(registry: RecordedRegistry) -> None:
    old = copy.deepcopy(current_schemas()["taskd.Task"].definition)
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("cost", "headers", "zone")]
    schema_id = ConfluentRegistry(registry.url).register("legacy-value", old)
    task = Task.new(type="t", priority=1, now_ms=7, payload=b"p")
    datum = {k: v for k, v in task.to_avro().items() if k not in ("cost", "headers", "zone")}
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(old, {}), datum)
    data = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
    assert _codec(registry).decode(data, Task) == task


def test_decode_task_accepts_the_confluent_framing(registry: RecordedRegistry) -> None:
    codec = _codec(registry)
    task = Task.new(type="t", priority=2, now_ms=9)
    assert decode_task(codec.encode(task), codec=codec, now_ms=0) == task
    assert decode_task(b'{"type": "u"}', codec=codec, now_ms=0, topic_priority=1).priority == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not the Confluent wire format: 0 bytes"),
        (b"\x00\x00\x01", "not the Confluent wire format: 3 bytes"),
        (b"\x05\x01\x00\x00\x00\x00", "starting with 05, expected magic 00"),
        (b"\xc3\x01\x00\x00\x00\x00", "too short for the Avro single-object encoding"),
        (b"\x00\x00\x0f\x42\x40\x02", "schema id 1000000 is unknown to the registry"),
    ],
)
def test_malformed_confluent_input_is_a_decode_error(
    registry: RecordedRegistry, data: bytes, message: str
) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        _codec(registry).decode(data, Task)
    assert caught.value.raw == data


def test_a_schema_id_of_another_record_is_a_decode_error(registry: RecordedRegistry) -> None:
    codec = _codec(registry)
    result = TaskResult(
        task_id="t", agent_id="a", attempt=0, status=TaskStatus.FAILED, started_at=1, finished_at=2
    )
    with pytest.raises(DecodeError, match=r"hold a taskd\.TaskResult, not a taskd\.Task"):
        codec.decode(codec.encode(result), Task)


def test_a_registry_schema_that_is_no_record_is_a_decode_error(
    registry: RecordedRegistry,
) -> None:
    schema_id = registry.register("odd-value", '"string"')
    data = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02a"
    with pytest.raises(DecodeError, match=f"schema id {schema_id}: not an Avro record schema"):
        _codec(registry).decode(data, Task)


@settings(max_examples=50)
@given(data=st.binary(max_size=60))
def test_random_bytes_only_ever_raise_decode_error(registry: RecordedRegistry, data: bytes) -> None:
    codec = _codec(registry)
    known_header = codec.encode(Task.new(type="t", priority=0, now_ms=0))[:5]
    for framed in (data, known_header + data):
        try:
            codec.decode(framed, Task)
        except DecodeError as exc:
            assert exc.raw == framed


@settings(max_examples=30)
@given(task=tasks(), cut=st.integers(0, 400))
def test_truncated_confluent_bytes_raise_decode_error(
    registry: RecordedRegistry, task: Task, cut: int
) -> None:
    codec = _codec(registry)
    data = codec.encode(task)
    with pytest.raises(DecodeError):
        codec.decode(data[: min(cut, len(data) - 1)], Task)


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_unreachable_registry_is_a_registry_error_not_a_decode_error() -> None:
    codec = ConfluentCodec(ConfluentRegistry(_closed_port_url()))
    with pytest.raises(RegistryError, match=r"cannot be reached \(registering 'taskd\.Task'"):
        codec.encode(Task.new(type="t", priority=0, now_ms=0))
    with pytest.raises(RegistryError, match=r"cannot be reached \(fetching schema id 7\)"):
        codec.decode(b"\x00\x00\x00\x00\x07\x00", Task)


def test_an_unreachable_registry_fails_the_codec_factory_at_once_in_one_line(
    settings: Settings,
) -> None:
    url = _closed_port_url()
    began = time.monotonic()
    with pytest.raises(RegistryError) as caught:
        codec_for(settings.model_copy(update={"schema_registry_url": url}))
    assert time.monotonic() - began < 5
    message = str(caught.value)
    assert message.startswith(f"schema registry at {url} cannot be reached")
    assert "\n" not in message


def test_a_failing_registry_is_a_registry_error(registry: RecordedRegistry) -> None:
    registry.fail_with_status = 500
    try:
        with pytest.raises(RegistryError, match="HTTP status code 500"):
            _codec(registry).encode(Task.new(type="t", priority=0, now_ms=0))
    finally:
        registry.fail_with_status = None


def test_a_record_that_does_not_fit_costs_no_registry_call(registry: RecordedRegistry) -> None:
    before = len(registry.requests)
    bad = replace(Task.new(type="t", priority=0, now_ms=0), priority=2**40)
    with pytest.raises(EncodeError, match="priority"):
        _codec(registry).encode(bad)
    assert len(registry.requests) == before


@pytest.mark.parametrize("url", ["file:///etc/passwd", "localhost:8081", ""])
def test_a_registry_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError, match="must be http"):
        ConfluentRegistry(url)


def test_the_codec_factory_registers_every_record_schema(
    registry: RecordedRegistry, settings: Settings
) -> None:
    codec = codec_for(settings.model_copy(update={"schema_registry_url": registry.url}))
    task = Task.new(type="t", priority=1, now_ms=3)
    assert codec.encode(task)[0] == 0 and codec.decode(codec.encode(task), Task) == task
    assert set(current_schemas()) <= set(registry.subjects)  # record name strategy


def test_the_registry_codec_reads_the_single_object_encoding_too(
    registry: RecordedRegistry,
) -> None:
    """A fleet switching to the registry keeps reading what was written before."""
    codec = _codec(registry)
    task = Task.new(type="t", priority=1, now_ms=3)
    old = Codec().encode(task)
    assert codec.frames(old) and codec.frames(codec.encode(task))
    assert codec.decode(old, Task) == task
    assert decode_task(old, codec=codec, now_ms=0) == task


def test_the_plain_codec_names_the_setting_a_confluent_record_needs(
    registry: RecordedRegistry,
) -> None:
    data = _codec(registry).encode(Task.new(type="t", priority=1, now_ms=3))
    with pytest.raises(DecodeError, match=r"Confluent wire format .*schema_registry_url"):
        Codec().decode(data, Task)


def test_a_heartbeat_of_an_agent_of_the_last_release_is_read_through_the_registry(
    registry: RecordedRegistry,
) -> None:
    """An agent of the last release registers its older heartbeat schema and writes with it;
    this release's reader fetches that schema by id and fills the new fields' defaults."""
    schemas = schemas_with_previous("AgentHeartbeat.1.avsc")
    older_agent = ConfluentCodec(ConfluentRegistry(registry.url), schemas=schemas)
    beat = heartbeat()
    written = older_agent.encode(beat)
    current_id = _codec(registry).register_all()["taskd.AgentHeartbeat"]
    assert int.from_bytes(written[1:5], "big") != current_id  # another registered version
    read = _codec(registry).decode(written, AgentHeartbeat)
    assert read == beat and read.task_types is None


def test_a_schema_the_registry_refuses_is_a_registry_error(registry: RecordedRegistry) -> None:
    bad = {"type": "record", "name": "x", "fields": [{"name": "a", "type": "nope"}]}
    with pytest.raises(RegistryError, match=r"Invalid schema .*HTTP status code 422"):
        ConfluentRegistry(registry.url).register("bad-value", bad)
