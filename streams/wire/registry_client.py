"""The Confluent schema registry: a small urllib client and the codec that frames records with it.

Confluent wire format: the magic byte ``0``, the writer schema's registry id as 4 bytes
big-endian, then the Avro binary body. Writer schemas are fetched by id (and cached), so records
written with an older registered schema decode against the current one, as with
:class:`~streams.wire.codec.Codec`.

Registry failures raise :class:`~streams.errors.RegistryError`, not DecodeError: the bytes may
be fine, so they must not be dead-lettered as malformed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from streams.errors import ConfigError, DecodeError, RegistryError
from streams.wire.codec import R, read_body, schema_for, write_body
from streams.wire.records import WireRecord
from streams.wire.schemas import WireSchema, build_wire_schema, current_schemas, named_types

CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_BYTES = 5
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

SubjectStrategy = Callable[[str], str]
"""Maps a record's full name (``taskd.Task``) to the registry subject its schema goes under."""


def record_name_strategy(record_name: str) -> str:
    """Confluent's RecordNameStrategy: the subject is the record's full name."""
    return record_name


def topic_name_strategy(topic: str) -> SubjectStrategy:
    """Confluent's TopicNameStrategy: the subject is ``<topic>-value``, whatever the record."""
    return lambda _record_name: f"{topic}-value"


class SchemaRegistryClient:
    """Registers schemas and fetches them by id over the registry's REST API, caching both."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        """``url``: the registry's base URL (http or https); ``timeout_s`` bounds each request."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"schema registry URL must be http(s)://..., got {url!r}")
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, object] = {}

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """The id of ``schema`` under ``subject``, registering it if needed (idempotent)."""
        text = json.dumps(schema, separators=(",", ":"))
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        reply = self._request("POST", path, {"schema": text})
        schema_id = None if reply is None else reply.get("id")
        if type(schema_id) is not int:
            raise RegistryError(f"registering under {subject!r}: no schema id in reply {reply!r}")
        self._ids[(subject, text)] = schema_id
        return schema_id

    def schema_by_id(self, schema_id: int) -> object | None:
        """The schema (parsed JSON) registered with ``schema_id``; None if the registry has none."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        reply = self._request("GET", f"/schemas/ids/{schema_id}", None)
        if reply is None:
            return None
        schema = _schema_of(reply, schema_id)
        self._schemas[schema_id] = schema
        return schema

    def _request(self, method: str, path: str, body: object) -> dict[str, Any] | None:
        """The JSON object the registry answers; None for 404; RegistryError otherwise."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._url + path,
            data=data,
            method=method,
            headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 404:
                    return None
                detail = exc.read()[:300].decode(errors="replace")
            raise RegistryError(f"{method} {path}: HTTP {exc.code} {detail}") from exc
        except OSError as exc:  # URLError, timeouts, refused connections
            raise RegistryError(f"{method} {self._url}{path}: {exc}") from exc
        return _json_object(payload, f"{method} {path}")


def _json_value(payload: bytes, what: str) -> object:
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise RegistryError(f"{what}: the registry answered with invalid JSON") from exc


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    reply = _json_value(payload, what)
    if not isinstance(reply, dict):
        raise RegistryError(f"{what}: the registry answered {reply!r}, not a JSON object")
    return reply


def _schema_of(reply: Mapping[str, Any], schema_id: int) -> object:
    text = reply.get("schema")
    if not isinstance(text, str):
        raise RegistryError(f"schema id {schema_id}: no schema in the registry's reply")
    return _json_value(text.encode(), f"schema id {schema_id}")


class ConfluentCodec:
    """Codec for the Confluent wire format; same interface as :class:`~streams.wire.Codec`."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        *,
        subject_strategy: SubjectStrategy = record_name_strategy,
        schemas: Mapping[str, WireSchema] | None = None,
    ) -> None:
        """Registers the current schemas lazily, under the subjects ``subject_strategy`` names."""
        self._client = client
        self._subject_strategy = subject_strategy
        self._current = dict(current_schemas() if schemas is None else schemas)
        self._ids: dict[str, int] = {}
        self._writers: dict[int, WireSchema] = {}

    def frames(self, data: bytes) -> bool:
        """Whether ``data`` starts with the Confluent magic byte 0."""
        return data[:1] == CONFLUENT_MAGIC

    def encode(self, record: WireRecord) -> bytes:
        """Magic 0, the schema id (registered on first use), the body; EncodeError if unfit."""
        schema = schema_for(self._current, type(record))
        body = write_body(record, schema)  # first: a bad record costs no registry call
        return CONFLUENT_MAGIC + self._id_of(schema).to_bytes(4, "big") + body

    def decode(self, data: bytes, record_type: type[R]) -> R:
        """The ``record_type`` in ``data``; DecodeError if malformed, RegistryError if down."""
        reader = schema_for(self._current, record_type)
        return read_body(data, CONFLUENT_HEADER_BYTES, self._writer_of(data), reader, record_type)

    def _id_of(self, schema: WireSchema) -> int:
        schema_id = self._ids.get(schema.name)
        if schema_id is None:
            subject = self._subject_strategy(schema.name)
            schema_id = self._client.register(subject, schema.definition)
            self._ids[schema.name] = schema_id
            self._writers[schema_id] = schema
        return schema_id

    def _writer_of(self, data: bytes) -> WireSchema:
        if len(data) < CONFLUENT_HEADER_BYTES or not self.frames(data):
            raise DecodeError(
                f"not the Confluent wire format: {len(data)} bytes starting with "
                f"{data[:1].hex() or 'nothing'}, expected magic 00 and a 4-byte schema id",
                raw=data,
            )
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_BYTES], "big")
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._fetch_writer(schema_id, data)
        return writer

    def _fetch_writer(self, schema_id: int, data: bytes) -> WireSchema:
        definition = self._client.schema_by_id(schema_id)
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
