"""The dispatcher's durable state: Faust tables in RocksDB, each with its changelog.

- ``inflight``: task id -> the encoded :class:`Assignment` of its current attempt; the lease
  (agent, attempt, dispatched time, lease length) and everything needed to re-dispatch it.
- ``ended``: dedupe key (task id, plus its replay count if any) -> when it ended and its shard
  (the duplicate window), so a task read again after a crash is dropped.

Faust writes a table from the partition of the current event (FAUST.md); the loop writes
outside stream iteration, so :func:`shard_context` stands in for an event of the shard. Both
tables have ``settings.shards`` partitions, like the topics they are keyed along.

Changelog records go through the dispatcher's confluent-kafka producer once one is attached
(:meth:`Tables.attach`), not through Faust's aiokafka producer: three or four changelog records
per task through aiokafka's pure-Python producer were a tenth of the dispatcher's time. The
records are the same (raw key, raw value or a tombstone, the same topic and partition), so
Faust's recovery reads them as its own; the local store's persisted offset, which tells
recovery where to start, is kept as Faust keeps it (the latest confirmed offset).
"""

from __future__ import annotations

import asyncio
import struct
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP

from streams.adapters.dispatcher.outputs import Outputs
from streams.adapters.dispatcher.writes import Pending
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


PERSIST_EVERY_S = 0.5
"""How often the stores learn their latest confirmed changelog offsets. Faust stores one per
record; a stale one only makes a restart read a few more changelog records again, which is
harmless (they are the same writes, in order)."""


class ProducedTable(faust.Table[bytes, bytes]):
    """A Faust table whose changelog records go through the dispatcher's :class:`Outputs` once
    attached.

    No key expiry nor table sensors are used here, so ``on_key_set``/``on_key_del`` only write
    the changelog record; before a sink is attached Faust's own producer writes it.
    """

    sink: Outputs | None = None
    last_write: Pending | None = None
    """The changelog record of the latest change, confirmed or not (None: Faust wrote it)."""
    _offsets: dict[TP, int] | None = None
    """Confirmed changelog offsets not stored yet (None: no store pending)."""
    _persisting: asyncio.TimerHandle | None = None

    def on_key_set(self, key: Any, value: Any) -> None:
        if self.sink is None:
            self.last_write = None
            super().on_key_set(key, value)
        else:
            self._changelog(self.sink, key, value)

    def on_key_del(self, key: Any) -> None:
        if self.sink is None:
            self.last_write = None
            super().on_key_del(key)
        else:
            self._changelog(self.sink, key, None)

    def _changelog(self, sink: Outputs, key: Any, value: Any) -> None:
        partition = self.partition_for_key(key)
        assert partition is not None  # tables here never use the producer's partitioner
        tp = TP(self.changelog_topic_name, partition)
        pending = self.last_write = Pending()

        def written(offset: int) -> None:
            self._written(tp, offset)
            pending.finish()

        sink.send_changelog(tp.topic, key, value, partition=partition, on_written=written)

    def _written(self, tp: TP, offset: int) -> None:
        """Remember the latest confirmed offset of ``tp``; stored ``PERSIST_EVERY_S`` later."""
        offsets = self._offsets
        if offsets is None:
            offsets = self._offsets = {}
            loop = asyncio.get_running_loop()
            self._persisting = loop.call_later(PERSIST_EVERY_S, self._persist)
        offsets[tp] = max(offset, offsets.get(tp, -1))

    def _persist(self) -> None:
        """Store the offsets in the partitions' databases that are still open: Faust's RocksDB
        store would open a revoked (or stopped) partition's database again to write one."""
        offsets, self._offsets, self._persisting = self._offsets or {}, None, None
        open_dbs = getattr(self.data, "_dbs", None)
        for tp, offset in offsets.items():
            if open_dbs is None or tp.partition in open_dbs:
                self.data.set_persisted_offset(tp, offset)

    def detach(self) -> None:
        """No more changelog writes through the sink, and no pending offset store (a restart
        reads the last half second of the changelog again: the same writes, in order)."""
        if self._persisting is not None:
            self._persisting.cancel()
        self.sink, self._offsets, self._persisting = None, None, None


class Tables:
    """The ``inflight`` and ``ended`` tables of one dispatcher app."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._source = settings.topics.results
        self.inflight = _table(app, "inflight", settings.shards)
        self.ended = _table(app, "ended", settings.shards)

    def attach(self, sink: Outputs) -> None:
        """Write the changelogs through ``sink`` from now on."""
        self.inflight.sink = sink
        self.ended.sink = sink

    def detach(self) -> None:
        """Back to Faust's producer (the sink is closing)."""
        self.inflight.detach()
        self.ended.detach()

    # Each change returns its changelog record's Pending (None when Faust's producer wrote it,
    # whose flush before every commit covers it): the inputs it backs are acked once it is
    # confirmed, as Faust's commit would have waited for its own producer.

    def put_inflight(self, shard: int, task_id: str, assignment: bytes) -> Pending | None:
        with shard_context(self._source, shard):
            self.inflight[task_id.encode()] = assignment
        return self.inflight.last_write

    def drop_inflight(self, shard: int, task_id: str) -> Pending | None:
        # ``del``, not ``pop``: pop reads the value back first, and a missing key is no error
        with shard_context(self._source, shard):
            del self.inflight[task_id.encode()]
        return self.inflight.last_write

    def put_ended(self, shard: int, key: str, at_ms: int) -> Pending | None:
        """Remember an ended task by its dedupe key (``streams.core.model.dedupe_key``)."""
        with shard_context(self._source, shard):
            self.ended[key.encode()] = _ENDED.pack(at_ms, shard)
        return self.ended.last_write

    def drop_ended(self, shard: int, key: str) -> Pending | None:
        with shard_context(self._source, shard):
            del self.ended[key.encode()]
        return self.ended.last_write

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


def _table(app: faust.App, name: str, partitions: int) -> ProducedTable:
    table = ProducedTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,  # bytes: Faust's raw serializer
        value_type=bytes,
    )
    app.tables.add(table)
    return table


def _text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)
