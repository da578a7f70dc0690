"""The single-object codec: round trips, malformed input, encoding errors, schema evolution."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import ConfigError, DecodeError, EncodeError
from streams.wire import SCHEMA_DIR, Assignment, Codec, Task, TaskResult, TaskStatus, WireRecord
from streams.wire.schemas import current_schemas
from tests.wire.strategies import ANY_RECORD, RECORD_STRATEGIES, tasks

CODEC = Codec()
TASK_FINGERPRINT = current_schemas()["taskd.Task"].fingerprint


def _decode_or_error(data: bytes, record_type: type[WireRecord]) -> WireRecord | DecodeError:
    """The record, or the DecodeError; any other exception fails the calling test."""
    try:
        return CODEC.decode(data, record_type)
    except DecodeError as exc:
        assert exc.raw == data
        assert str(exc)
        return exc


@pytest.mark.parametrize("record_type", RECORD_STRATEGIES, ids=lambda t: t.__name__)
@given(data=st.data())
def test_every_record_round_trips(record_type: type[WireRecord], data: st.DataObject) -> None:
    record = data.draw(RECORD_STRATEGIES[record_type])
    assert CODEC.decode(CODEC.encode(record), record_type) == record


@given(ANY_RECORD)
def test_a_fresh_codec_decodes_what_another_encoded(record: WireRecord) -> None:
    assert Codec().decode(CODEC.encode(record), type(record)) == record


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    assert isinstance(_decode_or_error(data, Task), DecodeError)


@pytest.mark.parametrize("record_type", RECORD_STRATEGIES, ids=lambda t: t.__name__)
@given(body=st.binary(max_size=200))
def test_a_known_header_with_a_random_body_decodes_or_raises_decode_error(
    record_type: type[WireRecord], body: bytes
) -> None:
    header = b"\xc3\x01" + current_schemas()[record_type.SCHEMA_NAME].fingerprint
    result = _decode_or_error(header + body, record_type)
    assert isinstance(result, DecodeError | record_type)


@given(ANY_RECORD, st.data())
def test_truncated_encodings_raise_decode_error(record: WireRecord, data: st.DataObject) -> None:
    encoded = CODEC.encode(record)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert isinstance(_decode_or_error(encoded[:cut], type(record)), DecodeError)


@given(ANY_RECORD, st.binary(min_size=1, max_size=20))
def test_trailing_bytes_raise_decode_error(record: WireRecord, garbage: bytes) -> None:
    result = _decode_or_error(CODEC.encode(record) + garbage, type(record))
    assert isinstance(result, DecodeError)
    assert f"{len(garbage)} unexpected byte(s)" in str(result)


@given(ANY_RECORD, st.data())
def test_mutated_encodings_decode_or_raise_decode_error(
    record: WireRecord, data: st.DataObject
) -> None:
    encoded = bytearray(CODEC.encode(record))
    for _ in range(data.draw(st.integers(1, 4))):
        encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    result = _decode_or_error(bytes(encoded), type(record))
    assert isinstance(result, DecodeError | type(record))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "0 bytes: too short"),
        (b"\xc3\x01\x00", "3 bytes: too short"),
        (b"\x01" * 12, "not the Avro single-object encoding: starts with 01 01"),
        (b"\x00\x00\x00\x00\x07\x02", r"Confluent wire format \(schema id 7\).*schema_regis"),
        (b'{"type": "x", "priority": 1}', "not the Avro single-object encoding"),
        (b"\xc3\x01" + b"\x11" * 8 + b"\x00", "unknown writer schema fingerprint 1111111111111111"),
        (b"\xc3\x01" + TASK_FINGERPRINT + b"\x02", "malformed taskd.Task: truncated"),
    ],
)
def test_malformed_input_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        CODEC.decode(data, Task)
    assert caught.value.raw == data


def test_bytes_of_another_record_type_are_refused() -> None:
    result = TaskResult(
        task_id="t1",
        agent_id="a1",
        attempt=0,
        status=TaskStatus.SUCCEEDED,
        started_at=1,
        finished_at=2,
    )
    with pytest.raises(DecodeError, match=r"hold a taskd\.TaskResult, not a taskd\.Task"):
        CODEC.decode(CODEC.encode(result), Task)


def test_invalid_utf8_in_a_string_is_a_decode_error() -> None:
    good = CODEC.encode(Task.new(type="ab", priority=0, now_ms=0))
    bad = good.replace(b"\x04ab", b"\x04\xff\xfe", 1)
    with pytest.raises(DecodeError, match=r"malformed taskd\.Task"):
        CODEC.decode(bad, Task)


def _task(**changes: Any) -> Task:
    return dataclasses.replace(Task.new(type="resize", priority=1, now_ms=1_000), **changes)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_task(priority=2**31), "priority: 2147483648 is not a 32-bit integer"),
        (_task(attempt=-(2**31) - 1), "attempt: .* is not a 32-bit integer"),
        (_task(submitted_at=2**63), "submitted_at: .* is not a 64-bit integer"),
        (_task(deadline=1.5), "deadline: 1.5 is not a 64-bit integer"),
        (_task(max_attempts=True), "max_attempts: True is not a 32-bit integer"),
        (_task(type=None), "type"),
        (_task(payload="text"), "bytes"),
        (_task(zone="\ud800"), "surrogate"),
        (_task(cost="cheap"), "cost"),
        (
            Assignment(
                task=_task(ttl_ms=2**64),
                agent_id="a",
                epoch=1,
                dispatched_at=2,
                lease_ms=3,
                dispatcher_shard=0,
                reply_partition=0,
            ),
            "task.ttl_ms: .* is not a 64-bit integer",
        ),
    ],
)
def test_a_record_that_does_not_fit_raises_encode_error(record: WireRecord, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        CODEC.encode(record)


def test_headers_are_sorted_and_a_key_given_twice_is_refused() -> None:
    task = _task(headers=(("b", "2"), ("a", "1")))
    assert task.headers == (("a", "1"), ("b", "2"))
    with pytest.raises(EncodeError, match="headers: key 'a' given twice"):
        _task(headers=(("a", "1"), ("a", "2")))


def test_task_new_fills_a_uuid4_hex_id_and_the_submission_time() -> None:
    first = Task.new(type="resize", priority=2, now_ms=1_234, payload=b"x", deadline=9_000)
    second = Task.new(type="resize", priority=2, now_ms=1_234)
    assert len(first.task_id) == 32 and int(first.task_id, 16) >= 0
    assert first.task_id[12] == "4"  # the uuid version digit
    assert first.task_id != second.task_id
    assert (first.submitted_at, first.deadline, first.payload) == (1_234, 9_000, b"x")
    assert (first.tenant, first.max_attempts, first.attempt) == ("default", 3, 0)


# Schema evolution ------------------------------------------------------------------------------


def _task_definition_without(*names: str) -> dict[str, Any]:
    definition = copy.deepcopy(current_schemas()["taskd.Task"].definition)
    definition["fields"] = [f for f in definition["fields"] if f["name"] not in names]
    return definition


def _single_object(
    codec: Codec, record_type: type[WireRecord], definition: dict[str, Any], datum: dict[str, Any]
) -> bytes:
    """``datum`` framed as a producer holding ``definition`` would write it."""
    fingerprint = codec.register_writer_schema(record_type, definition)
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(definition, {}), datum)
    return b"\xc3\x01" + fingerprint + body.getvalue()


@given(tasks())
def test_an_older_task_lacking_fields_decodes_with_their_defaults(task: Task) -> None:
    codec = Codec()
    old = _task_definition_without("cost", "headers")
    datum = {k: v for k, v in task.to_avro().items() if k not in ("cost", "headers")}
    data = _single_object(codec, Task, old, datum)
    assert codec.decode(data, Task) == dataclasses.replace(task, cost=None, headers=())


@given(tasks())
def test_a_newer_task_with_an_extra_field_decodes_without_it(task: Task) -> None:
    codec = Codec()
    new = copy.deepcopy(current_schemas()["taskd.Task"].definition)
    new["fields"].append(
        {"name": "labels", "type": {"type": "array", "items": "string"}, "default": []}
    )
    data = _single_object(codec, Task, new, {**task.to_avro(), "labels": ["x", "y"]})
    assert codec.decode(data, Task) == task


def test_an_older_writer_is_unknown_until_registered() -> None:
    old = _task_definition_without("cost")
    datum = {k: v for k, v in _task().to_avro().items() if k != "cost"}
    data = _single_object(Codec(), Task, old, datum)
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        Codec().decode(data, Task)


def test_an_older_assignment_may_refer_to_the_current_task_by_name() -> None:
    codec = Codec()
    old = copy.deepcopy(current_schemas()["taskd.Assignment"].definition)
    old["fields"] = [
        {**f, "type": "taskd.Task"} if f["name"] == "task" else f for f in old["fields"]
    ]
    old["fields"].append({"name": "retired", "type": "string"})
    fingerprint = codec.register_writer_schema(Assignment, old)
    assignment = Assignment(
        task=_task(),
        agent_id="a7",
        epoch=3,
        dispatched_at=5,
        lease_ms=30_000,
        dispatcher_shard=2,
        reply_partition=1,
    )
    named = {"taskd.Task": current_schemas()["taskd.Task"].definition}
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(old, named), {**assignment.to_avro(), "retired": "x"})
    assert codec.decode(b"\xc3\x01" + fingerprint + body.getvalue(), Assignment) == assignment


def test_a_writer_lacking_a_field_without_default_is_a_decode_error() -> None:
    codec = Codec()
    old = _task_definition_without("type")
    datum = {k: v for k, v in _task().to_avro().items() if k != "type"}
    data = _single_object(codec, Task, old, datum)
    with pytest.raises(DecodeError, match=r"malformed taskd\.Task"):
        codec.decode(data, Task)


def test_registering_a_schema_of_another_record_is_a_config_error() -> None:
    other = current_schemas()["taskd.TaskResult"].definition
    with pytest.raises(ConfigError, match=r"for taskd\.TaskResult, not taskd\.Task"):
        Codec().register_writer_schema(Task, other)
    with pytest.raises(ConfigError, match="not a valid Avro schema"):
        Codec().register_writer_schema(
            Task, {"type": "record", "name": "taskd.Task", "fields": [{"name": "x", "type": "no"}]}
        )


def test_the_avsc_json_and_the_definition_give_the_same_fingerprint() -> None:
    raw = json.loads((SCHEMA_DIR / "Task.avsc").read_text())
    assert Codec().register_writer_schema(Task, raw) == TASK_FINGERPRINT
