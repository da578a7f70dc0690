"""TaskEvent, the record of the ``events`` topic: its schema, round trips and evolution."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema
from hypothesis import given

from streams.errors import DecodeError
from streams.wire import (
    RECORD_TYPES,
    SCHEMA_DIR,
    Codec,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskStatus,
)
from streams.wire.schemas import current_schemas
from tests.wire.strategies import task_events

CODEC = Codec()
ARCHITECTURE_KINDS = {
    "RECEIVED",
    "DISPATCHED",
    "STARTED",
    "COMPLETED",
    "FAILED",
    "EXPIRED",
    "DEAD_LETTERED",
}
"""The lifecycle steps a TaskEvent can name (the kinds of its schema)."""


def _event(**fields: Any) -> TaskEvent:
    defaults: dict[str, Any] = {
        "task_id": "t1",
        "type": "resize",
        "kind": TaskEventKind.DISPATCHED,
        "at": 1_790_000_000_000,
        "attempt": 0,
        "priority": 1,
    }
    return TaskEvent(**{**defaults, **fields})


def _definition() -> dict[str, Any]:
    return copy.deepcopy(current_schemas()["taskd.TaskEvent"].definition)


def _written_with(codec: Codec, definition: dict[str, Any], datum: dict[str, Any]) -> bytes:
    """``datum`` framed as a producer holding ``definition`` would write it."""
    fingerprint = codec.register_writer_schema(TaskEvent, definition)
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(definition, {}), datum)
    return b"\xc3\x01" + fingerprint + body.getvalue()


def test_it_is_a_wire_record_with_the_architectures_kinds() -> None:
    assert TaskEvent in RECORD_TYPES
    assert TaskEvent.SCHEMA_NAME == "taskd.TaskEvent"
    assert {kind.value for kind in TaskEventKind} >= ARCHITECTURE_KINDS


def test_the_kinds_are_the_avro_symbols_in_order() -> None:
    raw = json.loads((SCHEMA_DIR / "TaskEvent.avsc").read_text())
    (kind,) = [field for field in raw["fields"] if field["name"] == "kind"]
    assert [k.value for k in TaskEventKind] == kind["type"]["symbols"]


def test_the_definition_is_standalone_with_the_task_status_written_out() -> None:
    definition = _definition()
    parse_schema(definition, {})  # raises if taskd.TaskStatus were only named
    assert '"SUCCEEDED"' in json.dumps(definition)


@pytest.mark.parametrize("kind", list(TaskEventKind))
def test_each_kind_round_trips(kind: TaskEventKind) -> None:
    event = _event(kind=kind, agent_id="a1", status=TaskStatus.FAILED, reason="EXPIRED")
    assert CODEC.decode(CODEC.encode(event), TaskEvent) == event


@given(task_events())
def test_any_event_round_trips(event: TaskEvent) -> None:
    assert Codec().decode(CODEC.encode(event), TaskEvent) == event


def test_optional_fields_default_to_none_and_the_default_tenant() -> None:
    event = CODEC.decode(CODEC.encode(_event()), TaskEvent)
    assert (event.tenant, event.agent_id, event.status, event.reason, event.error) == (
        "default",
        None,
        None,
        None,
        None,
    )
    assert event.due_at is None


def test_the_bytes_of_another_record_are_refused() -> None:
    task = Task.new(type="resize", priority=1, now_ms=1)
    with pytest.raises(DecodeError, match=r"hold a taskd\.Task, not a taskd\.TaskEvent"):
        CODEC.decode(CODEC.encode(task), TaskEvent)


# Schema evolution -------------------------------------------------------------------------------


def test_an_older_event_lacking_the_optional_fields_decodes_with_their_defaults() -> None:
    codec = Codec()
    later = ("tenant", "status", "reason", "due_at")
    old = _definition()
    old["fields"] = [field for field in old["fields"] if field["name"] not in later]
    event = _event(agent_id="a2", error="boom")
    datum = {k: v for k, v in event.to_avro().items() if k not in later}
    assert codec.decode(_written_with(codec, old, datum), TaskEvent) == event


def test_a_newer_event_with_an_extra_field_decodes_without_it() -> None:
    codec = Codec()
    new = _definition()
    new["fields"].append({"name": "trace_id", "type": ["null", "string"], "default": None})
    event = _event(kind=TaskEventKind.COMPLETED, status=TaskStatus.SUCCEEDED)
    data = _written_with(codec, new, {**event.to_avro(), "trace_id": "abc"})
    assert codec.decode(data, TaskEvent) == event


def test_an_older_event_without_a_required_field_is_a_decode_error() -> None:
    codec = Codec()
    old = _definition()
    old["fields"] = [field for field in old["fields"] if field["name"] != "priority"]
    datum = {k: v for k, v in _event().to_avro().items() if k != "priority"}
    with pytest.raises(DecodeError, match=r"malformed taskd\.TaskEvent"):
        codec.decode(_written_with(codec, old, datum), TaskEvent)
