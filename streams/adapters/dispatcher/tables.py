"""The dispatcher's durable state: Faust tables in RocksDB, each with its changelog.

- ``inflight``: task id -> the encoded :class:`Assignment` of its current attempt; the lease
  (agent, attempt, dispatched time, lease length) and everything needed to re-dispatch it.
- ``ended``: dedupe key (task id, plus its replay count if any) -> when it ended and its shard
  (the duplicate window), so a task read again after a crash is dropped.

Faust writes a table from the partition of the current event (FAUST.md); the loop writes
outside stream iteration, so :func:`shard_context` stands in for an event of the shard. Both
tables have ``settings.shards`` partitions, like the topics they are keyed along.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event

from streams.settings import Settings

_ENDED = struct.Struct(">qi")
"""ended value: (ended at, ms since the epoch; shard)."""


class _ShardMessage:
    """What Faust reads of the current event's message to pick a table partition."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


class _ShardEvent:
    def __init__(self, topic: str, partition: int) -> None:
        self.message = _ShardMessage(topic, partition)


@contextmanager
def shard_context(source_topic: str, partition: int) -> Iterator[None]:
    """Table writes inside this block go to ``partition`` (``source_topic``: one consumed topic
    with as many partitions as the tables)."""
    event = _ShardEvent(source_topic, partition)  # a strong reference while in use
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


class Tables:
    """The ``inflight`` and ``ended`` tables of one dispatcher app."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._source = settings.topics.results
        self.inflight = _table(app, "inflight", settings.shards)
        self.ended = _table(app, "ended", settings.shards)

    def put_inflight(self, shard: int, task_id: str, assignment: bytes) -> None:
        with shard_context(self._source, shard):
            self.inflight[task_id.encode()] = assignment

    def drop_inflight(self, shard: int, task_id: str) -> None:
        with shard_context(self._source, shard):
            self.inflight.pop(task_id.encode(), None)

    def put_ended(self, shard: int, key: str, at_ms: int) -> None:
        """Remember an ended task by its dedupe key (``streams.core.model.dedupe_key``)."""
        with shard_context(self._source, shard):
            self.ended[key.encode()] = _ENDED.pack(at_ms, shard)

    def drop_ended(self, shard: int, key: str) -> None:
        with shard_context(self._source, shard):
            self.ended.pop(key.encode(), None)

    def inflight_items(self) -> list[tuple[str, bytes]]:
        """Every in-flight entry of the shards this instance owns."""
        return [(_text(key), bytes(value)) for key, value in self.inflight.items()]

    def ended_items(self) -> list[tuple[str, int, int]]:
        """(dedupe key, ended at ms, shard) of every ended entry, oldest first."""
        found = []
        for key, value in self.ended.items():
            at_ms, shard = _ENDED.unpack(bytes(value))
            found.append((_text(key), at_ms, shard))
        return sorted(found, key=lambda item: item[1])


def _table(app: faust.App, name: str, partitions: int) -> Any:
    return app.Table(
        name,
        partitions=partitions,
        key_type=bytes,  # bytes: Faust's raw serializer
        value_type=bytes,
    )


def _text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)
