"""The Avro schemas of the wire records, shipped in the package (``streams/wire/avsc/``).

``schemas/*.avsc`` at the top of the repository is where they are written and reviewed; the
package holds identical copies (a test keeps them so), loaded with ``importlib.resources`` so an
installed wheel finds them.

Each record schema is turned into a :class:`WireSchema`: a *standalone* definition (a named
type nested in another, such as ``taskd.Task`` in ``taskd.Assignment``, is written out in full
where it is first used, as the Avro spec's Parsing Canonical Form and a schema registry expect),
the fastavro schema the codecs run on, and the CRC-64-AVRO fingerprint of the canonical form.

The codecs run on a copy with the ``logicalType`` annotations removed: timestamps stay plain
``int`` milliseconds in Python (fastavro would turn them into ``datetime``), the bytes on the
wire are the same, and the canonical form (hence the fingerprint) ignores logical types anyway.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from streams.errors import ConfigError

SCHEMA_DIR: Traversable = files("streams.wire") / "avsc"
"""Where the ``.avsc`` files the codecs load live: in the package, next to this module."""

SCHEMA_FILES = (
    "Task",
    "Assignment",
    "TaskResult",
    "AgentHeartbeat",
    "DeadLetter",
    "AgentRegistration",
    "TaskEvent",
    "AssignmentBatch",
    "ResultBatch",
    "TaskState",
    "EndedTasks",
    "DispatcherStatus",
    "TaskOutcome",
    "CancelRequest",
)
"""The record schemas, in load order: Task first, since Assignment, DeadLetter and TaskState
nest it; TaskEvent after TaskResult, whose TaskStatus enum it refers to; TaskOutcome after
DeadLetter, whose reason enum it refers to; the batches after the records they hold."""

NAMESPACE = "taskd"

_NAMED_KINDS = frozenset({"record", "enum", "fixed"})


@dataclass(frozen=True, slots=True)
class WireSchema:
    """One record schema, ready for the codecs."""

    name: str
    """Full name, e.g. ``taskd.Task``."""
    definition: dict[str, Any]
    """Standalone JSON definition, logical types kept: what a schema registry is given."""
    parsed: dict[str, Any]
    """The fastavro schema the codecs read and write with (logical types removed)."""
    fingerprint: bytes
    """CRC-64-AVRO of the Parsing Canonical Form, 8 bytes little-endian (as framed on the wire)."""


@functools.cache
def current_schemas(directory: Traversable | Path = SCHEMA_DIR) -> Mapping[str, WireSchema]:
    """The current schema of every record, by full name, loaded once from ``directory``.

    Raises ConfigError if the directory or a file is missing or not a valid Avro schema.
    """
    named: dict[str, Any] = {}
    loaded: dict[str, WireSchema] = {}
    for stem in SCHEMA_FILES:
        raw = _read_schema_file(directory / f"{stem}.avsc")
        try:
            schema = build_wire_schema(raw, named)
        except ConfigError as exc:
            raise ConfigError(f"schema file {stem}.avsc: {exc}") from exc
        parse_schema(raw, named)  # registers the names it defines, for the files after it
        loaded[schema.name] = schema
    return MappingProxyType(loaded)


PREVIOUS_DIR = "previous"
"""Under the schema directory: earlier versions of records (``<Record>.<n>.avsc``), which the
codecs still read, so that a component of the last release (an agent not yet upgraded) is
understood by one of this release."""


def previous_schemas(directory: Traversable | Path = SCHEMA_DIR) -> list[dict[str, Any]]:
    """The earlier versions of the records' schemas, as written."""
    folder = directory / PREVIOUS_DIR
    if not folder.is_dir():
        return []
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".avsc")),
                   key=lambda entry: entry.name)  # fmt: skip
    return [_read_schema_file(entry) for entry in files]


def build_wire_schema(definition: Mapping[str, Any], named: Mapping[str, Any]) -> WireSchema:
    """A WireSchema from a record definition whose named references resolve in ``named``.

    ``named`` maps full names to definitions (as fastavro's ``named_schemas`` does). Raises
    ConfigError if the definition is not a valid Avro record schema.
    """
    normal = _parse_record(definition, named)
    standalone: dict[str, Any] = _inline(_without_parse_hints(normal), named, set())
    parsed = _parse_record(_without_logical_types(standalone), {})
    canonical = to_parsing_canonical_form(parsed)
    return WireSchema(
        name=standalone["name"],
        definition=standalone,
        parsed=parsed,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


def _parse_record(definition: Mapping[str, Any], named: Mapping[str, Any]) -> dict[str, Any]:
    try:
        parsed = parse_schema(dict(definition), dict(named))
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise ConfigError(f"not a valid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise ConfigError(f"not an Avro record schema: {json.dumps(definition)[:200]}")
    return parsed


def _read_schema_file(path: Traversable | Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"Avro schema file {path} is missing: the package ships them in streams/wire/avsc "
            "(is the installation complete?)"
        )
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Avro schema file {path} cannot be read as JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"Avro schema file {path} does not hold a JSON object")
    return loaded


def _inline(node: Any, named: Mapping[str, Any], defined: set[str]) -> Any:
    """``node`` with each named type written out in full where first used, by name after."""
    if isinstance(node, str):
        if node in named and node not in defined:
            return _inline(named[node], named, defined)
        return node
    if isinstance(node, list):
        return [_inline(branch, named, defined) for branch in node]
    if isinstance(node, dict):
        return _inline_complex(node, named, defined)
    return node


def _inline_complex(node: dict[str, Any], named: Mapping[str, Any], defined: set[str]) -> Any:
    out = dict(node)
    if out.get("type") in _NAMED_KINDS:
        defined.add(out["name"])
    if "fields" in out:
        out["fields"] = [
            {**field, "type": _inline(field["type"], named, defined)} for field in out["fields"]
        ]
    for key in ("items", "values"):
        if key in out:
            out[key] = _inline(out[key], named, defined)
    if isinstance(out.get("type"), dict | list):
        out["type"] = _inline(out["type"], named, defined)
    return out


def _without_parse_hints(parsed: dict[str, Any]) -> dict[str, Any]:
    """fastavro marks the top of a parsed schema with bookkeeping keys; drop them."""
    return {key: value for key, value in parsed.items() if not key.startswith("__")}


def _without_logical_types(node: Any) -> Any:
    """``node`` without ``logicalType`` annotations (default values are left as they are)."""
    if isinstance(node, list):
        return [_without_logical_types(item) for item in node]
    if isinstance(node, dict):
        return {
            key: value if key == "default" else _without_logical_types(value)
            for key, value in node.items()
            if key != "logicalType"
        }
    return node


def named_types(schemas: Iterable[WireSchema]) -> dict[str, Any]:
    """Every named type (records, enums) the given schemas define, by full name.

    Lets an older writer schema refer to ``taskd.Task`` or ``taskd.TaskStatus`` by name.
    """
    named: dict[str, Any] = {}
    for schema in schemas:
        parse_schema(schema.definition, named)
    return named
