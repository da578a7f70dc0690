"""Inbound tasks in either framing: Avro (through a codec) or one JSON object per message.

JSON lets ``kcat`` and console producers submit tasks. Field names are the Avro field names;
types are checked strictly (``true`` is not an integer, ``1.0`` is not an int), unknown or
repeated fields are rejected, and what is absent takes its Avro default, except ``task_id``
(the caller's ``default_id``, which the dispatcher derives from the record's topic, partition
and offset so that a redelivered record is still a duplicate; else a new uuid4 hex),
``submitted_at`` (``now_ms``), ``payload`` (empty) and ``priority`` (the topic's level). A
``payload`` string becomes its UTF-8 bytes; any other JSON value its compact JSON.

Whatever the framing, the task then goes through :func:`validate_task`, so both paths accept
exactly the same tasks. Every failure is a DecodeError naming the field and the problem.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from streams.errors import ConfigError, DecodeError, TooLargeError
from streams.wire.codec import RecordCodec
from streams.wire.limits import TaskLimits, shorten
from streams.wire.records import SOURCE_KEY_HEADER, Task, header

_INT32 = 2**31
_INT64 = 2**63


def decode_task(
    data: bytes,
    *,
    codec: RecordCodec,
    now_ms: int,
    levels: int = 4,
    topic_priority: int | None = None,
    default_id: str | None = None,
    key: bytes | None = None,
    limits: TaskLimits | None = None,
) -> Task:
    """The valid task in ``data``, framed for ``codec`` (Avro) or a JSON object.

    ``now_ms``, ``topic_priority`` and ``default_id`` fill a JSON task's ``submitted_at``,
    ``priority`` and ``task_id`` when it has none; an Avro task carries its own. A JSON task
    without an id keeps its record's ``key`` in its SOURCE_KEY_HEADER. Raises DecodeError for
    anything malformed or invalid.
    """
    if codec.frames(data):
        return validate_task(codec.decode(data, Task), levels=levels, raw=data, limits=limits)
    if data.lstrip(b" \t\r\n")[:1] == b"{":
        return parse_task_json(
            data,
            now_ms=now_ms,
            levels=levels,
            topic_priority=topic_priority,
            default_id=default_id,
            key=key,
            limits=limits,
        )
    raise DecodeError(
        f"neither Avro single-object nor JSON: starts with {data[:4].hex(' ') or 'nothing'}",
        raw=data,
    )


def parse_task_json(
    data: bytes,
    *,
    now_ms: int,
    levels: int = 4,
    topic_priority: int | None = None,
    default_id: str | None = None,
    key: bytes | None = None,
    limits: TaskLimits | None = None,
) -> Task:
    """The valid task in one JSON object (UTF-8); DecodeError naming the field if invalid.

    A ``priority`` in the JSON wins over ``topic_priority``; without either it is an error.
    Without a ``task_id``, the record's ``key`` (when there is one) goes into the task's
    SOURCE_KEY_HEADER, so the producer can match the task's outcome by it.
    """
    try:
        fields = _task_fields(_load_object(data))
        headers = fields.get("headers", ())
        if "task_id" not in fields and key and header(headers, SOURCE_KEY_HEADER) is None:
            source = (SOURCE_KEY_HEADER, key.decode("utf-8", errors="backslashreplace"))
            fields["headers"] = (*headers, source)
        fields.setdefault("task_id", default_id or uuid.uuid4().hex)
        fields.setdefault("submitted_at", now_ms)
        fields.setdefault("payload", b"")
        _require(fields, "type", None)
        _require(fields, "priority", topic_priority)
        return validate_task(Task(**fields), levels=levels, raw=data, limits=limits)
    except DecodeError as exc:
        exc.raw = data
        raise


def validate_task(
    task: Task, *, levels: int, raw: bytes | None = None, limits: TaskLimits | None = None
) -> Task:
    """``task`` itself if it is valid for a dispatcher with ``levels`` priority levels.

    Checks what the schema cannot say: within ``limits`` (TooLargeError), non-empty ids,
    priority in ``0 .. levels-1``, times and TTL not negative, at least one attempt allowed, a
    finite non-negative cost.
    """
    if levels < 1:
        raise ConfigError(f"levels must be at least 1, got {levels}")
    problem = None if limits is None else limits.problem(task)
    if problem is not None:
        raise TooLargeError(f"task {shorten(task.task_id, 80)!r}: {problem}", raw=raw)
    for field, check, reason in _RULES:
        if not check(task, levels):
            value = getattr(task, field)
            raise DecodeError(
                f"{field}: {reason.format(top=levels - 1)}, got {value!r}",
                raw=raw,
            )
    return task


_RULES: tuple[tuple[str, Callable[[Task, int], bool], str], ...] = (
    ("task_id", lambda task, _: task.task_id != "", "must not be empty"),
    ("type", lambda task, _: task.type != "", "must not be empty"),
    ("priority", lambda task, levels: 0 <= task.priority < levels, "must be in 0..{top}"),
    ("submitted_at", lambda task, _: task.submitted_at >= 0, "must not be negative"),
    ("deadline", lambda task, _: task.deadline is None or task.deadline >= 0, "must be >= 0"),
    ("ttl_ms", lambda task, _: task.ttl_ms is None or task.ttl_ms >= 0, "must be >= 0"),
    ("max_attempts", lambda task, _: task.max_attempts >= 1, "must be at least 1"),
    ("attempt", lambda task, _: task.attempt >= 0, "must not be negative"),
    ("cost", lambda task, _: _valid_cost(task.cost), "must be a finite number >= 0"),
)
"""(field, check, reason): the checks of validate_task, in the order they are reported."""


def _valid_cost(cost: float | None) -> bool:
    return cost is None or (math.isfinite(cost) and cost >= 0)


def _require(fields: dict[str, Any], name: str, fallback: object) -> None:
    if name in fields:
        return
    if fallback is None:
        raise DecodeError(f"{name}: required")
    fields[name] = fallback


def _load_object(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        loaded = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise DecodeError(f"JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DecodeError(f"JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("JSON: nested too deeply") from exc
    if not isinstance(loaded, dict):
        raise DecodeError(f"JSON: expected one object, got {type(loaded).__name__}")
    return loaded


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DecodeError(f"{key}: given twice")
        result[key] = value
    return result


def _reject_constant(name: str) -> NoReturn:
    raise DecodeError(f"JSON: {name} is not a JSON number")


def _task_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The Task keyword arguments for the fields present in ``obj``, each checked."""
    unknown = sorted(set(obj) - set(_FIELD_PARSERS))
    if unknown:
        raise DecodeError(f"unknown field(s): {', '.join(unknown)}")
    return {name: _FIELD_PARSERS[name](name, value) for name, value in obj.items()}


def _fail(field: str, expected: str, value: object) -> NoReturn:
    raise DecodeError(f"{field}: expected {expected}, got {_show(value)}")


def _show(value: object) -> str:
    shown = json.dumps(value, ensure_ascii=True)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _string(field: str, value: object) -> str:
    if not isinstance(value, str):
        _fail(field, "a string", value)
    _check_unicode(field, value)
    return value


def _check_unicode(field: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DecodeError(f"{field}: not valid Unicode (lone surrogate)") from exc


def _integer(field: str, value: object, bound: int) -> int:
    if type(value) is not int:  # bool is an int subclass, and it is not a number here
        _fail(field, "an integer", value)
    if not -bound <= value < bound:
        _fail(field, f"a {bound.bit_length()}-bit integer", value)
    return value


def _int(field: str, value: object) -> int:
    return _integer(field, value, _INT32)


def _long(field: str, value: object) -> int:
    return _integer(field, value, _INT64)


def _double(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(field, "a number", value)
    number = float(value)
    if not math.isfinite(number):
        _fail(field, "a finite number", value)
    return number


def _optional(parse: Callable[[str, object], Any]) -> Callable[[str, object], Any]:
    return lambda field, value: None if value is None else parse(field, value)


def _string_list(field: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        _fail(field, "a list of strings", value)
    return tuple(_string(f"{field}[{index}]", item) for index, item in enumerate(value))


def _string_map(field: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        _fail(field, "an object of strings", value)
    for key in value:
        _check_unicode(f"{field} key", key)
    return tuple((key, _string(f"{field}.{key}", item)) for key, item in value.items())


def _payload(field: str, value: object) -> bytes:
    try:
        text = value if isinstance(value, str) else _compact_json(value)
    except ValueError as exc:  # a number too large for a double, such as 1e999
        raise DecodeError(f"{field}: {exc}") from exc
    _check_unicode(field, text)
    return text.encode("utf-8")


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_FIELD_PARSERS: dict[str, Callable[[str, object], Any]] = {
    "task_id": _string,
    "type": _string,
    "priority": _int,
    "payload": _payload,
    "tenant": _string,
    "affinity_key": _optional(_string),
    "required_skills": _string_list,
    "zone": _optional(_string),
    "target_agent": _optional(_string),
    "submitted_at": _long,
    "deadline": _optional(_long),
    "ttl_ms": _optional(_long),
    "max_attempts": _int,
    "attempt": _int,
    "cost": _optional(_double),
    "headers": _string_map,
}
"""How each JSON field becomes a Task argument; the keys are exactly the Task fields."""
