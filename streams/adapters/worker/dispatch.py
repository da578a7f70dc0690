"""The agent's own partition of the dispatch topic, read from its start offset.

Every consumer call runs on one thread of its own, so calls never overlap and the event loop
never blocks. The consumer group ``<prefix>agent.p<P>`` is used only to commit offsets (the
partition is assigned, never subscribed), which shows an agent's lag to the usual tools.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from confluent_kafka import KafkaException, Message, TopicPartition

from streams.adapters.kafka import make_consumer, retrying
from streams.errors import KafkaError
from streams.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def commit_group(settings: Settings, partition: int) -> str:
    """The consumer group an agent on dispatch ``partition`` commits its offsets in."""
    return f"{settings.topic_prefix}agent.p{partition}"


class DispatchReader:
    """Reads one dispatch partition and commits offsets given to it (already in order)."""

    def __init__(self, settings: Settings, partition: int, *, queue_size: int) -> None:
        """``queue_size``: assignments librdkafka keeps fetched ahead (the prefetch bound)."""
        self._partition = TopicPartition(settings.topics.dispatch, partition)
        self._group = commit_group(settings, partition)
        self._consumer = make_consumer(
            settings,
            group_id=self._group,
            extra={"queued.min.messages": max(queue_size, 1), "enable.auto.offset.store": False},
        )
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="taskd-dispatch")
        self.start_offset = -1
        """Where reading started (set by ``open``)."""

    @property
    def partition(self) -> int:
        return int(self._partition.partition)

    async def open(self, start_offset: int, *, timeout_s: float) -> int:
        """Start reading at max(``start_offset``, the committed offset); that offset."""
        (committed,) = await self._call(
            lambda: retrying(
                lambda: self._consumer.committed([self._partition], timeout=timeout_s),
                what=f"read the committed offset of {self._group}",
                timeout_s=timeout_s,
            )
        )
        self.start_offset = max(start_offset, int(committed.offset))
        at = TopicPartition(self._partition.topic, self._partition.partition, self.start_offset)
        await self._call(lambda: self._consumer.assign([at]))
        return self.start_offset

    async def poll(self, max_messages: int, *, timeout_s: float) -> list[Message]:
        """Up to ``max_messages`` assignments, waiting at most ``timeout_s`` for the first.

        What librdkafka has already fetched is taken at once on the caller's thread (a call
        that does not wait); only an empty queue costs a hop to the reader's thread to wait.
        """
        messages = self._consumer.consume(num_messages=max_messages, timeout=0)
        if not messages:
            messages = await self._call(lambda: self._take(max_messages, timeout_s))
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
            else:
                log.warning("reading the dispatch partition: %s", error.str())
        return good

    def _take(self, max_messages: int, timeout_s: float) -> list[Message]:
        # consume(n, timeout) waits until it has all n or the time is up: an agent with free
        # slots would sit out the whole timeout with work in hand. Wait for the first only,
        # then take what is already fetched.
        first = self._consumer.poll(timeout_s)
        if first is None:
            return []
        if max_messages <= 1:
            return [first]
        return [first, *self._consumer.consume(num_messages=max_messages - 1, timeout=0)]

    async def commit(self, offset: int, *, wait: bool) -> None:
        """Commit ``offset`` (the next to read); with ``wait``, KafkaError if it fails."""
        at = TopicPartition(self._partition.topic, self._partition.partition, offset)
        try:
            if wait:
                await self._call(lambda: self._consumer.commit(offsets=[at], asynchronous=False))
            else:
                await self._call(lambda: self._consumer.commit(offsets=[at], asynchronous=True))
        except KafkaException as error:
            raise KafkaError(f"cannot commit offset {offset}: {error.args[0].str()}") from error

    async def close(self) -> None:
        await self._call(self._consumer.close)
        self._thread.shutdown()

    async def _call(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)
