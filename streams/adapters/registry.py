"""The schema registry, through confluent-kafka's ``SchemaRegistryClient``.

The wire layer frames records in the Confluent wire format and resolves writer schemas
(``streams.wire.confluent``) but does no network I/O and imports no Kafka client, so the
registry client lives here: :class:`ConfluentRegistry` gives the codec the two calls it needs
(register a schema under a subject, fetch one by id), both cached by confluent-kafka's client,
and turns every failure into one :class:`~streams.errors.RegistryError` line.

:func:`registry_codec` is what :func:`~streams.adapters.kafka.codec_for` returns when
``schema_registry_url`` is set: it registers every current schema at once, so a registry that
cannot be reached is reported when a component starts, not on its first record.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from streams.errors import ConfigError, RegistryError
from streams.settings import Settings
from streams.wire.confluent import ConfluentCodec, SubjectStrategy, record_name_strategy

REQUEST_TIMEOUT_S = 5.0
"""Bound of one request to the registry."""
MAX_RETRIES = 2
"""Retries of a request that failed on the network or with a retriable status (429, 5xx),
``RETRY_WAIT_MS`` apart and more (exponential backoff with jitter), before RegistryError."""
RETRY_WAIT_MS = 100
_SCHEMA_NOT_FOUND = 40403


class ConfluentRegistry:
    """A :class:`~streams.wire.confluent.SchemaRegistry` on confluent-kafka's client."""

    def __init__(
        self, url: str, *, timeout_s: float = REQUEST_TIMEOUT_S, max_retries: int = MAX_RETRIES
    ) -> None:
        """``url``: the registry's base URL (http or https); ConfigError if it is not one."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"schema registry URL must be http(s)://..., got {url!r}")
        self.url = url.rstrip("/")
        self._client = SchemaRegistryClient(
            {
                "url": self.url,
                "timeout": timeout_s,
                "max.retries": max_retries,
                "retries.wait.ms": RETRY_WAIT_MS,
                "retries.max.wait.ms": 1_000,
            }
        )

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """The id of ``schema`` under ``subject``, registering it if needed (idempotent)."""
        text = json.dumps(schema, separators=(",", ":"))
        try:
            schema_id = self._client.register_schema(subject, Schema(text, "AVRO"))
        except Exception as exc:  # SchemaRegistryError, or the HTTP client's own
            raise self._error(f"registering {subject!r}", exc) from exc
        if type(schema_id) is not int:
            raise RegistryError(f"registering {subject!r} at {self.url}: no schema id in reply")
        return schema_id

    def schema_by_id(self, schema_id: int) -> object | None:
        """The schema (parsed JSON) registered with ``schema_id``; None if the registry has none."""
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 or exc.error_code == _SCHEMA_NOT_FOUND:
                return None
            raise self._error(f"fetching schema id {schema_id}", exc) from exc
        except Exception as exc:  # the HTTP client's own: refused, timed out, ...
            raise self._error(f"fetching schema id {schema_id}", exc) from exc
        if schema.schema_type not in (None, "AVRO") or not schema.schema_str:
            return None  # a Protobuf or JSON schema: no record of ours
        try:
            definition: object = json.loads(schema.schema_str)
        except ValueError as exc:
            raise RegistryError(f"schema id {schema_id} at {self.url}: not JSON") from exc
        return definition

    def close(self) -> None:
        """Close the client's HTTP connections."""
        self._client.close()

    def _error(self, what: str, exc: Exception) -> RegistryError:
        if isinstance(exc, SchemaRegistryError):
            return RegistryError(f"schema registry at {self.url}, {what}: {exc}")
        detail = str(exc) or type(exc).__name__
        return RegistryError(f"schema registry at {self.url} cannot be reached ({what}): {detail}")


def registry_codec(
    settings: Settings, *, subject_strategy: SubjectStrategy = record_name_strategy
) -> ConfluentCodec:
    """The Confluent codec of ``settings.schema_registry_url``, with every current schema
    registered (RegistryError if the registry cannot be reached or refuses one)."""
    if not settings.schema_registry_url:
        raise ConfigError("no schema registry configured (schema_registry_url)")
    codec = ConfluentCodec(
        ConfluentRegistry(settings.schema_registry_url), subject_strategy=subject_strategy
    )
    codec.register_all()
    return codec
