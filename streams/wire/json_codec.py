"""Records as JSON, for the topics people and the Kafka tool chain read.

With ``record_format = "json"`` (``TASKD_RECORD_FORMAT``), the records written for readers
outside the system (``ResultBatch`` on ``results``, ``TaskEvent`` on ``events``, ``DeadLetter``
on ``dlq``, ``TaskOutcome`` on ``replies``) are one JSON object each, so kcat and Kafka's
console consumer print them as text. Every other record keeps the inner codec's Avro framing.
Readers take either, whatever the setting: a fleet can switch one process at a time.

The object's fields are the Avro field names with their plain values: enums by symbol,
timestamps as integer milliseconds, a union as its value (``null`` or the value itself), and
a ``bytes`` field as a JSON string when it is UTF-8 text (payloads and outputs usually are),
else as ``{"base64": "..."}``; a non-finite number (an invalid task's cost in a dead letter)
as the string ``"inf"``, ``"-inf"`` or ``"nan"``. Decoding follows the record's schema, so it
gives back the same bytes either way.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from typing import Any

from streams.errors import DecodeError, EncodeError
from streams.wire.codec import R, RecordCodec
from streams.wire.records import DeadLetter, ResultBatch, TaskEvent, TaskOutcome, WireRecord
from streams.wire.schemas import current_schemas

READABLE_RECORDS: tuple[type[WireRecord], ...] = (ResultBatch, TaskEvent, DeadLetter, TaskOutcome)
"""The records written as JSON with ``record_format = "json"``."""


class JsonRecordCodec:
    """Writes ``json_types`` as JSON and the rest with ``inner``; reads both."""

    def __init__(self, inner: RecordCodec, json_types: Iterable[type[WireRecord]] = ()) -> None:
        self._inner = inner
        self._json_names = frozenset(record_type.SCHEMA_NAME for record_type in json_types)
        schemas = current_schemas()
        self._schemas = {name: schema.parsed for name, schema in schemas.items()}

    def frames(self, data: bytes) -> bool:
        """Whether ``data`` has the inner codec's Avro framing (a JSON record has none: the
        task topics' own JSON form is read by ``decode_task``, not here)."""
        return self._inner.frames(data)

    def encode(self, record: WireRecord) -> bytes:
        if record.SCHEMA_NAME not in self._json_names:
            return self._inner.encode(record)
        datum = _to_json(self._schemas[record.SCHEMA_NAME], record.to_avro())
        try:
            return json.dumps(
                datum, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode()
        except (TypeError, ValueError) as error:
            raise EncodeError(f"{record.SCHEMA_NAME} cannot be written as JSON: {error}") from error

    def decode(self, data: bytes, record_type: type[R]) -> R:
        if not is_json(data):
            return self._inner.decode(data, record_type)
        name = record_type.SCHEMA_NAME
        try:
            loaded = json.loads(data)
            return record_type.from_avro(_from_json(self._schemas[name], loaded))
        except (ValueError, TypeError, KeyError, binascii.Error) as error:
            raise DecodeError(f"not a JSON {name}: {error}", raw=data) from error


def is_json(data: bytes) -> bool:
    """Whether ``data`` looks like one JSON object (Avro framings start otherwise)."""
    return data.lstrip(b" \t\r\n")[:1] == b"{"


def _to_json(schema: Any, value: Any) -> Any:
    """``value`` (as fastavro writes it) with its bytes made JSON text."""
    if value is None:
        return None
    kind = _kind(schema)
    if kind == "union":
        return _to_json(_branch(schema), value)
    if kind == "bytes":
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if kind == "record":
        return {f["name"]: _to_json(f["type"], value[f["name"]]) for f in schema["fields"]}
    if kind == "array":
        return [_to_json(schema["items"], item) for item in value]
    if kind == "map":
        return {key: _to_json(schema["values"], item) for key, item in value.items()}
    if kind in _FLOATS and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no such numbers
    return value


_FLOATS = frozenset({"double", "float"})


def _from_json(schema: Any, value: Any) -> Any:
    """The fastavro-shaped value of JSON ``value``; absent fields take their defaults."""
    if value is None:
        return None
    kind = _kind(schema)
    if kind == "union":
        return _from_json(_branch(schema), value)
    if kind == "bytes":
        return _bytes_from_json(value)
    if kind == "record":
        if not isinstance(value, dict):
            raise TypeError(f"{schema['name']} is not a JSON object")
        return {f["name"]: _field(f, value) for f in schema["fields"]}
    if kind == "array":
        return [_from_json(schema["items"], item) for item in value]
    if kind == "map":
        return {key: _from_json(schema["values"], item) for key, item in value.items()}
    if kind in _FLOATS and isinstance(value, str):
        return float(value)  # what _to_json wrote of a non-finite number (ValueError else)
    return value


def _bytes_from_json(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"], validate=True)
    if not isinstance(value, str):
        raise TypeError(f"a bytes field holds {type(value).__name__}")
    return value.encode("utf-8")


def _field(field: dict[str, Any], value: dict[str, Any]) -> Any:
    name = field["name"]
    if name in value:
        return _from_json(field["type"], value[name])
    if "default" in field:
        return field["default"]
    raise KeyError(f"field {name!r} is missing")


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return _kind(schema["type"]) if isinstance(schema["type"], dict | list) else schema["type"]
    return str(schema)


def _branch(union: list[Any]) -> Any:
    """The non-null branch of a ``["null", X]`` union (the only unions the records use)."""
    (branch,) = [item for item in union if item != "null"]
    return branch
