"""The Confluent wire format: framing and schema resolution, with no network I/O of its own.

Framing: the magic byte ``0``, the writer schema's registry id as 4 bytes big-endian, then the
Avro binary body (the same body as the single-object encoding). The registry itself is reached
through a :class:`SchemaRegistry`: the adapters give one backed by confluent-kafka's
``SchemaRegistryClient`` (``streams.adapters.registry``); the wire layer only frames, and
resolves a writer schema fetched by id against the current one, so records written with an
older registered schema decode as with :class:`~streams.wire.codec.Codec`.

A :class:`ConfluentCodec` writes the Confluent framing and reads both framings: a fleet moving
to a registry keeps reading what was written before (the compacted ``registry`` and
``dispatcher-state`` topics hold such records for good) and what components not yet switched
still write.

Registry failures raise :class:`~streams.errors.RegistryError`, not DecodeError: the bytes may
be fine, so they must not be dead-lettered as malformed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from streams.errors import ConfigError, DecodeError
from streams.wire.codec import Codec, R, read_body, schema_for, write_body
from streams.wire.records import WireRecord
from streams.wire.schemas import WireSchema, build_wire_schema, current_schemas, named_types

CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_BYTES = 5

SubjectStrategy = Callable[[str], str]
"""Maps a record's full name (``taskd.Task``) to the registry subject its schema goes under."""


def record_name_strategy(record_name: str) -> str:
    """Confluent's RecordNameStrategy: the subject is the record's full name."""
    return record_name


def topic_name_strategy(topic: str) -> SubjectStrategy:
    """Confluent's TopicNameStrategy: the subject is ``<topic>-value``, whatever the record."""
    return lambda _record_name: f"{topic}-value"


class SchemaRegistry(Protocol):
    """What the codec needs of a schema registry; RegistryError when it cannot answer."""

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """The id of ``schema`` under ``subject``, registering it if needed (idempotent)."""
        ...

    def schema_by_id(self, schema_id: int) -> object | None:
        """The schema (parsed JSON) registered with ``schema_id``; None if there is none."""
        ...


def confluent_frame(schema_id: int, body: bytes) -> bytes:
    """Magic 0, ``schema_id`` as 4 bytes big-endian, then ``body``."""
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + body


def confluent_schema_id(data: bytes) -> int:
    """The schema id in the Confluent header of ``data``; DecodeError if it has none."""
    if len(data) < CONFLUENT_HEADER_BYTES or data[:1] != CONFLUENT_MAGIC:
        raise DecodeError(
            f"not the Confluent wire format: {len(data)} bytes starting with "
            f"{data[:1].hex() or 'nothing'}, expected magic 00 and a 4-byte schema id",
            raw=data,
        )
    return int.from_bytes(data[1:CONFLUENT_HEADER_BYTES], "big")


class ConfluentCodec:
    """Writes the Confluent wire format, reads it and the single-object encoding.

    Same interface as :class:`~streams.wire.Codec` (``RecordCodec``).
    """

    def __init__(
        self,
        registry: SchemaRegistry,
        *,
        subject_strategy: SubjectStrategy = record_name_strategy,
        schemas: Mapping[str, WireSchema] | None = None,
    ) -> None:
        """Registers the current schemas lazily (or all at once with :meth:`register_all`),
        under the subjects ``subject_strategy`` names."""
        self._registry = registry
        self._subject_strategy = subject_strategy
        self._current = dict(current_schemas() if schemas is None else schemas)
        self._single_object = Codec(schemas)
        self._ids: dict[str, int] = {}
        self._writers: dict[int, WireSchema] = {}

    def register_all(self) -> dict[str, int]:
        """Register every current schema now (RegistryError if the registry cannot answer);
        their ids by record name."""
        for schema in self._current.values():
            self._id_of(schema)
        return dict(self._ids)

    def frames(self, data: bytes) -> bool:
        """Whether ``data`` starts with the Confluent magic 0 or the single-object ``C3 01``."""
        return data[:1] == CONFLUENT_MAGIC or self._single_object.frames(data)

    def encode(self, record: WireRecord) -> bytes:
        """Magic 0, the schema id (registered on first use), the body; EncodeError if unfit."""
        schema = schema_for(self._current, type(record))
        body = write_body(record, schema)  # first: a bad record costs no registry call
        return confluent_frame(self._id_of(schema), body)

    def decode(self, data: bytes, record_type: type[R]) -> R:
        """The ``record_type`` in ``data`` in either framing; DecodeError if malformed,
        RegistryError if the registry cannot answer for its schema id."""
        if self._single_object.frames(data):
            return self._single_object.decode(data, record_type)
        reader = schema_for(self._current, record_type)
        return read_body(data, CONFLUENT_HEADER_BYTES, self._writer_of(data), reader, record_type)

    def _id_of(self, schema: WireSchema) -> int:
        schema_id = self._ids.get(schema.name)
        if schema_id is None:
            subject = self._subject_strategy(schema.name)
            schema_id = self._registry.register(subject, schema.definition)
            self._ids[schema.name] = schema_id
            self._writers[schema_id] = schema
        return schema_id

    def _writer_of(self, data: bytes) -> WireSchema:
        schema_id = confluent_schema_id(data)
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._fetch_writer(schema_id, data)
        return writer

    def _fetch_writer(self, schema_id: int, data: bytes) -> WireSchema:
        definition = self._registry.schema_by_id(schema_id)
        if definition is None:
            raise DecodeError(f"schema id {schema_id} is unknown to the registry", raw=data)
        if not isinstance(definition, Mapping):
            raise DecodeError(f"schema id {schema_id}: not an Avro record schema", raw=data)
        try:
            fetched = build_wire_schema(definition, named_types(self._current.values()))
        except ConfigError as exc:
            raise DecodeError(f"schema id {schema_id}: {exc}", raw=data) from exc
        current = self._current.get(fetched.name)
        # The current schema itself lets read_body skip schema resolution.
        if current is not None and current.fingerprint == fetched.fingerprint:
            return current
        return fetched
