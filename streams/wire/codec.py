"""Avro single-object encoding of the wire records, with schema evolution.

Framing (Avro spec, "Single-object encoding"): the two bytes ``C3 01``, the 8-byte
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form (little-endian), then the
Avro binary body. The fingerprint names the writer schema; the reader schema is always the
current one, so a codec that knows an older writer schema (``register_writer_schema``) decodes
what older producers wrote, fields added since taking their defaults.

Every malformed input raises :class:`~streams.errors.DecodeError` carrying the raw bytes; a
record that does not fit its schema raises :class:`~streams.errors.EncodeError`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastavro import schemaless_reader, schemaless_writer

from streams.errors import ConfigError, DecodeError, EncodeError
from streams.wire.records import WireRecord
from streams.wire.schemas import (
    WireSchema,
    build_wire_schema,
    current_schemas,
    named_types,
    previous_schemas,
)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
FINGERPRINT_BYTES = 8
HEADER_BYTES = len(SINGLE_OBJECT_MAGIC) + FINGERPRINT_BYTES

R = TypeVar("R", bound=WireRecord)


class RecordCodec(Protocol):
    """What producers and the dispatcher need of a codec, whatever its framing."""

    def frames(self, data: bytes) -> bool:
        """Whether ``data`` starts with this codec's framing (it may still be malformed)."""
        ...

    def encode(self, record: WireRecord) -> bytes:
        """The framed Avro encoding of ``record``; EncodeError if it does not fit its schema."""
        ...

    def decode(self, data: bytes, record_type: type[R]) -> R:
        """The record of ``record_type`` in ``data``; DecodeError for anything malformed."""
        ...


class Codec:
    """Avro single-object codec for the wire records (no schema registry needed)."""

    def __init__(self, schemas: Mapping[str, WireSchema] | None = None) -> None:
        """Uses the current ``schemas/*.avsc`` unless ``schemas`` (by full name) are given."""
        self._current = dict(current_schemas() if schemas is None else schemas)
        self._headers = {
            name: SINGLE_OBJECT_MAGIC + schema.fingerprint for name, schema in self._current.items()
        }
        self._writers = {schema.fingerprint: schema for schema in self._current.values()}
        if schemas is None:
            for previous in previous_schemas():
                self._accept_writer(previous)

    def register_writer_schema(
        self, record_type: type[WireRecord], schema: Mapping[str, Any]
    ) -> bytes:
        """Accept bytes written with ``schema`` (e.g. an older version); returns its fingerprint.

        ``schema`` may refer to the current named types (``taskd.Task``, ...) by name. Raises
        ConfigError if it is not a valid record schema or names another record.
        """
        reader = schema_for(self._current, record_type)
        writer = build_wire_schema(schema, named_types(self._current.values()))
        if writer.name != reader.name:
            raise ConfigError(f"writer schema is for {writer.name}, not {reader.name}")
        self._writers[writer.fingerprint] = writer
        return writer.fingerprint

    def _accept_writer(self, schema: Mapping[str, Any]) -> None:
        writer = build_wire_schema(schema, named_types(self._current.values()))
        if writer.name not in self._current:
            raise ConfigError(f"an earlier schema of {writer.name}, which is no record now")
        self._writers.setdefault(writer.fingerprint, writer)

    def frames(self, data: bytes) -> bool:
        """Whether ``data`` starts with the single-object magic ``C3 01``."""
        return data[: len(SINGLE_OBJECT_MAGIC)] == SINGLE_OBJECT_MAGIC

    def encode(self, record: WireRecord) -> bytes:
        """``C3 01``, the fingerprint, the body; EncodeError if ``record`` does not fit."""
        schema = schema_for(self._current, type(record))
        return self._headers[schema.name] + write_body(record, schema)

    def decode(self, data: bytes, record_type: type[R]) -> R:
        """The ``record_type`` in ``data``, written with any known schema; else DecodeError."""
        reader = schema_for(self._current, record_type)
        return read_body(data, HEADER_BYTES, self._writer_of(data), reader, record_type)

    def _writer_of(self, data: bytes) -> WireSchema:
        if data[:1] == b"\x00" and len(data) >= 5:  # Confluent's: magic 0, a 4-byte schema id
            raise DecodeError(
                f"the Confluent wire format (schema id {int.from_bytes(data[1:5], 'big')}), "
                "not the Avro single-object encoding: reading it needs the schema registry "
                "(schema_registry_url)",
                raw=data,
            )
        if len(data) < HEADER_BYTES:
            raise DecodeError(
                f"{len(data)} bytes: too short for the Avro single-object encoding "
                f"({HEADER_BYTES}-byte header)",
                raw=data,
            )
        if not self.frames(data):
            raise DecodeError(
                f"not the Avro single-object encoding: starts with {data[:2].hex(' ')}, "
                f"expected {SINGLE_OBJECT_MAGIC.hex(' ')}",
                raw=data,
            )
        fingerprint = bytes(data[len(SINGLE_OBJECT_MAGIC) : HEADER_BYTES])
        writer = self._writers.get(fingerprint)
        if writer is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fingerprint.hex()}: "
                "not one of the current schemas nor a registered older one",
                raw=data,
            )
        return writer


def schema_for(schemas: Mapping[str, WireSchema], record_type: type[WireRecord]) -> WireSchema:
    """The schema of ``record_type`` among ``schemas``; ConfigError if there is none."""
    try:
        return schemas[record_type.SCHEMA_NAME]
    except (KeyError, AttributeError) as exc:
        raise ConfigError(f"no wire schema for {record_type.__name__}") from exc


def write_body(record: WireRecord, schema: WireSchema) -> bytes:
    """The Avro binary body of ``record`` (no framing); EncodeError if it does not fit."""
    try:
        datum = record.to_avro()
        problem = _integer_rule(schema).problem(datum)
    except Exception as exc:  # a field of the wrong type breaks the conversion
        raise _unfit(schema, _describe(exc)) from exc
    if problem is not None:
        raise _unfit(schema, problem)
    stream = io.BytesIO()
    try:
        schemaless_writer(stream, schema.parsed, datum)
    except Exception as exc:  # fastavro raises many types; the contract is EncodeError
        raise _unfit(schema, _describe(exc)) from exc
    return stream.getvalue()


def _unfit(schema: WireSchema, problem: str) -> EncodeError:
    return EncodeError(f"{schema.name} does not fit its schema: {problem}")


def read_body(
    data: bytes, offset: int, writer: WireSchema, reader: WireSchema, record_type: type[R]
) -> R:
    """The record whose Avro body starts at ``offset``, written with ``writer``, read as ``reader``.

    The body must use every byte to the end: trailing bytes are a DecodeError.
    """
    if writer.name != reader.name:
        raise DecodeError(f"the bytes hold a {writer.name}, not a {reader.name}", raw=data)
    stream = io.BytesIO(data)
    stream.seek(offset)
    try:
        resolve_to = None if writer is reader else reader.parsed
        datum = schemaless_reader(stream, writer.parsed, resolve_to)
    except Exception as exc:  # fastavro raises many types on bad input; the contract is DecodeError
        raise DecodeError(f"malformed {reader.name}: {_describe(exc)}", raw=data) from exc
    if not isinstance(datum, dict):  # a record schema always reads as a dict
        raise DecodeError(f"malformed {reader.name}: not a record", raw=data)
    trailing = len(data) - stream.tell()
    if trailing:
        raise DecodeError(f"{trailing} unexpected byte(s) after the {reader.name} record", raw=data)
    return record_type.from_avro(datum)


@dataclass(frozen=True, slots=True)
class _IntegerRule:
    """The int and long fields of a record, checked before writing.

    fastavro's writer checks every other type itself but writes a bool, a float or an integer
    out of range into an int or long field without complaint; its full ``validate`` would catch
    them but triples the encoding time, so only these fields are checked here.
    """

    bounds: tuple[tuple[str, int], ...]
    """(field, bound): the value must be an int in ``-bound .. bound-1``."""
    nested: tuple[tuple[str, _IntegerRule], ...]
    """(field, rule) for fields holding a record (or null)."""

    def problem(self, datum: Mapping[str, Any], path: str = "") -> str | None:
        """What is wrong with an integer field of ``datum``, or None if nothing is."""
        for name, bound in self.bounds:
            value = datum.get(name)
            if value is not None and (type(value) is not int or not -bound <= value < bound):
                return f"{path}{name}: {value!r} is not a {bound.bit_length()}-bit integer"
        for name, rule in self.nested:
            inner = datum.get(name)
            found = None if inner is None else rule.problem(inner, f"{path}{name}.")
            if found is not None:
                return found
        return None


_INTEGER_BOUNDS = {"int": 2**31, "long": 2**63}
_integer_rules: dict[bytes, _IntegerRule] = {}
"""Built once per schema (by fingerprint) and shared by every codec: rules never change."""


def _integer_rule(schema: WireSchema) -> _IntegerRule:
    rule = _integer_rules.get(schema.fingerprint)
    if rule is None:
        rule = _integer_rules[schema.fingerprint] = _build_integer_rule(schema.parsed)
    return rule


def _build_integer_rule(record: Mapping[str, Any]) -> _IntegerRule:
    bounds: list[tuple[str, int]] = []
    nested: list[tuple[str, _IntegerRule]] = []
    for field in record["fields"]:
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        for branch in branches:
            kind = branch if isinstance(branch, str) else branch["type"]
            if kind in _INTEGER_BOUNDS:
                bounds.append((field["name"], _INTEGER_BOUNDS[kind]))
            elif kind == "record":
                nested.append((field["name"], _build_integer_rule(branch)))
    return _IntegerRule(bounds=tuple(bounds), nested=tuple(nested))


def _describe(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return f"truncated ({str(exc) or 'unexpected end of data'})"
    return f"{type(exc).__name__}: {exc}"
