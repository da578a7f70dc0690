"""Inbound tasks as JSON, and decode_task accepting either framing with one validation."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import DecodeError
from streams.wire import (
    REPLY_PARTITION_HEADER,
    SOURCE_KEY_HEADER,
    Codec,
    Task,
    decode_task,
    outcome_partition,
    parse_task_json,
    validate_task,
)
from streams.wire.json_input import _FIELD_PARSERS
from tests.wire.strategies import tasks, valid_tasks

CODEC = Codec()
NOW_MS = 1_700_000_000_000
TASK_FIELDS = [field.name for field in dataclasses.fields(Task)]


def _json(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _as_json(task: Task) -> bytes:
    """``task`` as a producer would write it in JSON (its payload must be UTF-8 text)."""
    fields = {**task.to_avro(), "payload": task.payload.decode()}
    return json.dumps(fields).encode()


def test_every_task_field_has_a_json_parser() -> None:
    assert list(_FIELD_PARSERS) == TASK_FIELDS


def test_a_task_without_an_id_takes_the_one_its_reader_gives_the_same_each_time() -> None:
    data = b'{"type": "resize", "priority": 2}'
    ids = {parse_task_json(data, now_ms=t, default_id="tasks.p2/1/42").task_id for t in (1, 2)}
    assert ids == {"tasks.p2/1/42"}
    own = parse_task_json(
        b'{"type": "r", "priority": 1, "task_id": "mine"}', now_ms=1, default_id="x"
    )
    assert own.task_id == "mine"


def test_a_minimal_task_gets_its_id_time_payload_and_defaults_filled() -> None:
    task = parse_task_json(b'{"type": "resize", "priority": 2}', now_ms=NOW_MS)
    assert uuid.UUID(hex=task.task_id).version == 4 and len(task.task_id) == 32
    assert (task.type, task.priority, task.submitted_at, task.payload) == (
        "resize",
        2,
        NOW_MS,
        b"",
    )
    assert (task.tenant, task.required_skills, task.headers) == ("default", (), ())
    assert (task.max_attempts, task.attempt, task.cost, task.deadline) == (3, 0, None, None)


def test_a_string_payload_becomes_its_utf8_bytes() -> None:
    task = parse_task_json(_json(type="t", priority=0, payload="héllo"), now_ms=NOW_MS)
    assert task.payload == "héllo".encode()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"w": 640, "h": [1, 2.5], "name": "é"}, '{"w":640,"h":[1,2.5],"name":"é"}'),
        ([1, None, True], "[1,null,true]"),
        (42, "42"),
        (None, "null"),
    ],
)
def test_any_other_payload_becomes_its_compact_json(payload: object, expected: str) -> None:
    task = parse_task_json(_json(type="t", priority=0, payload=payload), now_ms=NOW_MS)
    assert task.payload == expected.encode()


def test_the_topic_gives_the_priority_unless_the_task_states_one() -> None:
    assert parse_task_json(b'{"type": "t"}', now_ms=0, topic_priority=3).priority == 3
    explicit = parse_task_json(b'{"type": "t", "priority": 1}', now_ms=0, topic_priority=3)
    assert explicit.priority == 1


def test_given_id_time_and_headers_are_kept() -> None:
    data = _json(
        task_id="abc",
        type="t",
        priority=0,
        submitted_at=5,
        headers={"z": "1", "a": "2"},
        required_skills=["gpu", "ssd"],
        cost=2,
        deadline=10,
        ttl_ms=0,
    )
    task = parse_task_json(data, now_ms=NOW_MS)
    assert (task.task_id, task.submitted_at, task.cost, task.deadline) == ("abc", 5, 2.0, 10)
    assert task.headers == (("a", "2"), ("z", "1"))
    assert task.required_skills == ("gpu", "ssd")


BAD_JSON: list[tuple[bytes, str]] = [
    (b'{"priority": 1}', "type: required"),
    (b'{"type": "t"}', "priority: required"),
    (b'{"type": 7, "priority": 1}', "type: expected a string, got 7"),
    (b'{"type": "", "priority": 1}', "type: must not be empty"),
    (b'{"type": "t", "priority": true}', "priority: expected an integer, got true"),
    (b'{"type": "t", "priority": 1.0}', "priority: expected an integer, got 1.0"),
    (b'{"type": "t", "priority": "1"}', 'priority: expected an integer, got "1"'),
    (b'{"type": "t", "priority": 4}', r"priority: must be in 0\.\.3, got 4"),
    (b'{"type": "t", "priority": -1}', "priority: must be in"),
    (b'{"type": "t", "priority": 4294967296}', "priority: expected a 32-bit integer"),
    (b'{"type": "t", "priority": 1, "ttl_ms": -1}', "ttl_ms: must be >= 0, got -1"),
    (b'{"type": "t", "priority": 1, "deadline": -5}', "deadline: must be >= 0"),
    (b'{"type": "t", "priority": 1, "deadline": 1e3}', "deadline: expected an integer"),
    (b'{"type": "t", "priority": 1, "submitted_at": -5}', "submitted_at: must not be negative"),
    (b'{"type": "t", "priority": 1, "submitted_at": 1e30}', "submitted_at: expected an integer"),
    (b'{"type": "t", "priority": 1, "max_attempts": 0}', "max_attempts: must be at least 1"),
    (b'{"type": "t", "priority": 1, "attempt": -1}', "attempt: must not be negative"),
    (b'{"type": "t", "priority": 1, "cost": -0.5}', "cost: must be a finite number >= 0"),
    (b'{"type": "t", "priority": 1, "cost": "big"}', "cost: expected a number"),
    (b'{"type": "t", "priority": 1, "cost": false}', "cost: expected a number"),
    (b'{"type": "t", "priority": 1, "cost": 1e999}', "cost: expected a finite number"),
    (b'{"type": "t", "priority": 1, "cost": NaN}', "NaN is not a JSON number"),
    (b'{"type": "t", "priority": 1, "required_skills": "gpu"}', "required_skills: expected"),
    (b'{"type": "t", "priority": 1, "required_skills": ["a", 1]}', r"required_skills\[1\]"),
    (b'{"type": "t", "priority": 1, "headers": []}', "headers: expected an object"),
    (b'{"type": "t", "priority": 1, "headers": {"k": 1}}', "headers.k: expected a string"),
    (b'{"type": "t", "priority": 1, "zone": 3}', "zone: expected a string"),
    (b'{"type": "t", "priority": 1, "task_id": ""}', "task_id: must not be empty"),
    (b'{"type": "t", "priority": 1, "tenant": null}', "tenant: expected a string, got null"),
    (b'{"type": "t", "priority": 1, "payload": [1e999]}', "payload:"),
    (b'{"type": "t", "priority": 1, "payload": "\\ud800"}', "payload: not valid Unicode"),
    (b'{"type": "\\udfff", "priority": 1}', "type: not valid Unicode"),
    (b'{"type": "t", "priority": 1, "colour": 1, "age": 2}', r"unknown field\(s\): age, colour"),
    (b'{"type": "t", "type": "u", "priority": 1}', "type: given twice"),
    (b'{"type": "t", "priority": 1', "JSON: Expecting"),
    (b'["type", "t"]', "JSON: expected one object, got list"),
    (b'{"type": "t"} {}', "JSON: Extra data"),
    (b'{"type": "\xff"}', "JSON: not UTF-8"),
    (b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON: nested too deeply"),
    (b'{"type": "t", "priority": 1, "attempt": 1' + b"0" * 5000 + b"}", "JSON: "),
]


@pytest.mark.parametrize(("data", "message"), BAD_JSON, ids=[m for _, m in BAD_JSON])
def test_bad_json_says_which_field_and_why(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        parse_task_json(data, now_ms=NOW_MS)
    assert caught.value.raw == data


@given(valid_tasks(levels=4), st.text())
def test_any_valid_task_written_as_json_reads_back_equal(task: Task, text: str) -> None:
    task = dataclasses.replace(task, payload=text.encode())
    assert parse_task_json(_as_json(task), now_ms=0, levels=4) == task


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(TASK_FIELDS) | st.text(max_size=8), JSON_VALUES))
def test_any_json_object_gives_an_encodable_valid_task_or_decode_error(
    obj: dict[str, Any],
) -> None:
    data = json.dumps(obj).encode()
    try:
        task = parse_task_json(data, now_ms=NOW_MS, topic_priority=0)
    except DecodeError as exc:
        assert exc.raw == data
        return
    assert validate_task(task, levels=4) is task
    assert CODEC.decode(CODEC.encode(task), Task) == task


@given(st.binary(max_size=100))
def test_any_bytes_give_a_task_or_decode_error(data: bytes) -> None:
    try:
        parse_task_json(data, now_ms=NOW_MS, topic_priority=0)
    except DecodeError as exc:
        assert exc.raw == data


# decode_task: either framing, one validation ----------------------------------------------------


@given(valid_tasks())
def test_decode_task_reads_avro_and_json_alike(task: Task) -> None:
    task = dataclasses.replace(task, payload=b"{}")
    from_avro = decode_task(CODEC.encode(task), codec=CODEC, now_ms=0)
    from_json = decode_task(b" \n\t" + _as_json(task), codec=CODEC, now_ms=0)
    assert from_avro == from_json == task


def _verdict(data: bytes) -> Task | str:
    try:
        return decode_task(data, codec=CODEC, now_ms=0, levels=4)
    except DecodeError as exc:
        return str(exc)


@given(tasks(payloads=st.just(b"x"), costs=st.floats(allow_nan=False, allow_infinity=False)))
def test_avro_and_json_tasks_pass_the_same_validation(task: Task) -> None:
    # JSON cannot carry an infinite cost at all, so only finite ones are compared.
    assert _verdict(CODEC.encode(task)) == _verdict(_as_json(task))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"priority": 7}, r"priority: must be in 0\.\.3, got 7"),
        ({"ttl_ms": -1}, "ttl_ms: must be >= 0"),
        ({"max_attempts": 0}, "max_attempts: must be at least 1"),
        ({"cost": float("inf")}, "cost: must be a finite number"),
    ],
)
def test_avro_tasks_are_validated_too(change: dict[str, Any], message: str) -> None:
    task = dataclasses.replace(Task.new(type="t", priority=0, now_ms=0), **change)
    data = CODEC.encode(task)
    with pytest.raises(DecodeError, match=message) as caught:
        decode_task(data, codec=CODEC, now_ms=0, levels=4)
    assert caught.value.raw == data


@pytest.mark.parametrize("data", [b"", b"   ", b"hello", b"\x00\x00\x00\x00\x01", b"[1]"])
def test_neither_avro_nor_json_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError, match="neither Avro single-object nor JSON") as caught:
        decode_task(data, codec=CODEC, now_ms=0)
    assert caught.value.raw == data


@given(st.binary(max_size=100))
def test_decode_task_only_ever_raises_decode_error(data: bytes) -> None:
    try:
        decode_task(data, codec=CODEC, now_ms=NOW_MS, topic_priority=1)
    except DecodeError as exc:
        assert exc.raw == data


def test_a_task_without_an_id_keeps_its_own_key_header_and_gets_no_second_one() -> None:
    data = b'{"type": "t", "priority": 1, "headers": {"taskd-key": "mine"}}'
    task = parse_task_json(data, now_ms=0, default_id="topic/0/7", key=b"record-key")
    assert dict(task.headers) == {SOURCE_KEY_HEADER: "mine"}
    plain = parse_task_json(b'{"type": "t", "priority": 1}', now_ms=0, key=b"record-key")
    assert dict(plain.headers) == {SOURCE_KEY_HEADER: "record-key"}


@pytest.mark.parametrize(
    ("value", "partition"), [("3", 3), ("03", 3), ("²", None), ("-1", None), ("x", None)]
)
def test_only_an_ascii_number_names_an_outcome_partition(value: str, partition: int | None) -> None:
    assert outcome_partition(((REPLY_PARTITION_HEADER, value),)) == partition
