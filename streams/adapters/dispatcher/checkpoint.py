"""The checkpoint: how the dispatcher's work becomes durable, in three steps, in this order.

1. Every record written before the checkpoint (assignments, retries, dead letters) is
   confirmed by the broker.
2. The state changes noted before it are written to the state changelog, and confirmed.
3. The input offsets that were committable at it are committed.

A crash anywhere in between loses nothing: the inputs after the last commit are read again,
and what they started is found in the state (a task in flight, or ended) or is done again. What
is done again is the *at-least-once window*: a task dispatched since the last checkpoint may be
dispatched a second time after a crash. Checkpoints are taken every ``commit_interval_ms``, so
that window is about as long, plus the time the three steps take.

One checkpoint runs at a time; the next is taken once it is complete. Everything here runs on
the event loop; the steps advance on the outputs' confirmations. Step 3 is the caller's: the
input consumer is used by its own thread only (``intake.py``), so the checkpoint hands over the
offsets to commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from confluent_kafka import TopicPartition

from streams.adapters.dispatcher.outputs import Outputs
from streams.adapters.dispatcher.state import Record, ShardState
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)

Committable = Callable[[], list[TopicPartition]]
"""The input offsets (of the shards checkpointed) that moved since they were last committed."""


class Checkpointer:
    """Takes checkpoints of the shards it is given (see the module docstring)."""

    def __init__(
        self,
        outputs: Outputs,
        *,
        codec: RecordCodec,
        changelog: str,
        dedupe_window: int,
        clock: Callable[[], int],
    ) -> None:
        self._outputs = outputs
        self._codec = codec
        self._changelog = changelog
        self._window = dedupe_window
        self._clock = clock
        self._under_way: asyncio.Future[list[TopicPartition]] | None = None
        self.taken = 0
        """Checkpoints completed."""

    @property
    def under_way(self) -> bool:
        return self._under_way is not None and not self._under_way.done()

    def take(
        self,
        shards: dict[int, ShardState],
        committable: Committable,
        *,
        final: bool = False,
        ended: bool = True,
    ) -> asyncio.Future[list[TopicPartition]] | None:
        """Start a checkpoint of ``shards`` now, unless one is under way (None then). The future
        gives the offsets to commit (asked of ``committable`` at once) when steps 1 and 2 are
        done. ``final``: the shards are given up, every open task is written now; without
        ``ended``, no ended keys are written (``ShardState.drain``)."""
        if self.under_way:
            return None
        done: asyncio.Future[list[TopicPartition]] = asyncio.get_running_loop().create_future()
        self._under_way = done
        epoch = self._outputs.close_epoch()
        now_ms = self._clock()
        records = {
            shard: state.drain(
                self._codec, now_ms=now_ms, window=self._window, final=final, ended=ended
            )
            for shard, state in shards.items()
        }
        offsets = committable()
        self._outputs.when_confirmed(epoch, lambda: self._write(records, offsets, done))
        return done

    async def complete(
        self, shards: dict[int, ShardState], committable: Committable, *, ended: bool = True
    ) -> list[TopicPartition]:
        """Steps 1 and 2 for ``shards``, after the checkpoint under way, every open task written:
        when it returns, everything done for them so far is durable; the offsets to commit.
        ``ended``: as for :meth:`take`."""
        while self._under_way is not None and not self._under_way.done():
            await asyncio.wait([self._under_way])
        done = self.take(shards, committable, final=True, ended=ended)
        assert done is not None
        return await done

    def _write(
        self,
        records: dict[int, list[Record]],
        offsets: list[TopicPartition],
        done: asyncio.Future[list[TopicPartition]],
    ) -> None:
        """Step 2: the changelog records; the checkpoint is done once every one is confirmed."""
        left = sum(len(shard_records) for shard_records in records.values())
        if not left:
            self._finish(offsets, done)
            return

        def one_written() -> None:
            nonlocal left
            left -= 1
            if left == 0:
                self._finish(offsets, done)

        for shard, shard_records in records.items():
            for record in shard_records:
                self._outputs.send(
                    self._changelog,
                    record.value,
                    key=record.key,
                    partition=shard,
                    then=one_written,
                )

    def _finish(
        self, offsets: list[TopicPartition], done: asyncio.Future[list[TopicPartition]]
    ) -> None:
        self.taken += 1
        if not done.done():
            done.set_result(offsets)
