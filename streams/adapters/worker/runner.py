"""Runs the assignments read from the agent's partition, never more than its capacity at once.

Each assignment read is admitted or skipped (stale epoch, attempt already taken, undecodable),
waits for a free slot (the most urgent first: priority, then deadline, then partition order;
the dispatcher may send a few more than the slots so a freed slot need not wait for it), runs,
and has its result written to its ``reply_partition``; only then is its offset finished, so
commits never pass an assignment whose result is not on the broker.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from streams.adapters.metrics import AgentMetrics
from streams.adapters.worker.config import AgentConfig
from streams.adapters.worker.handlers import Invoker, Invokers
from streams.adapters.worker.kafka import Writer, now_ms
from streams.adapters.worker.offsets import OffsetTracker, SeenAttempts
from streams.adapters.worker.results import Outcome, rejected, run_handler
from streams.core.model import dedupe_key
from streams.errors import DecodeError, KafkaError
from streams.settings import Settings
from streams.wire import AgentRegistration, Assignment, RecordCodec

log = logging.getLogger(__name__)

OVERTAKEN_S = 2.0
"""A waiting assignment passed over by more urgent ones for this long starts next."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """An admitted assignment waiting for a slot."""

    offset: int
    assignment: Assignment
    invoke: Invoker
    admitted_s: float
    """``time.monotonic()`` when it was read."""


class TaskRunner:
    """The agent's slots: assignments waiting, running, and the offsets they hold back."""

    def __init__(
        self,
        config: AgentConfig,
        settings: Settings,
        claim: AgentRegistration,
        *,
        invokers: Invokers,
        writer: Writer,
        codec: RecordCodec,
        metrics: AgentMetrics,
        wake: asyncio.Event,
    ) -> None:
        self._config = config
        self._epoch = claim.epoch
        self._results_topic = settings.topics.results
        self._invokers, self._writer, self._metrics, self._wake = invokers, writer, metrics, wake
        self._codec = codec
        self._seen = SeenAttempts(config.seen_attempts)
        self.offsets = OffsetTracker(claim.start_offset)
        self._waiting: list[tuple[int, float, int, Fetched]] = []
        """Heap of (priority, deadline, offset, assignment): the most urgent first."""
        self._running: set[asyncio.Task[None]] = set()
        self._writing: set[asyncio.Task[None]] = set()
        self.completed = 0
        """Attempts run to an end with their result written (rejections not counted)."""
        self.fenced_by: int | None = None
        """The newer epoch seen on the partition: another owner took it over."""

    def room(self) -> int:
        """How many more assignments may be read now (free slots plus free prefetch)."""
        limit = self._config.capacity + self._config.prefetch_slots
        return limit - len(self._running) - len(self._waiting)

    def load(self) -> tuple[int, int]:
        """(tasks running now, attempts completed so far), for the heartbeats."""
        return len(self._running), self.completed

    def take(self, message: Message) -> bool:
        """Admit or skip the assignment in ``message``; False if it shows the agent is fenced."""
        offset = int(message.offset() or 0)
        try:
            assignment = self._codec.decode(message.value() or b"", Assignment)
        except DecodeError as error:
            log.warning("skipping an undecodable assignment at offset %d: %s", offset, error)
            return self._skip(offset, "undecodable")
        if assignment.epoch > self._epoch:
            self.fenced_by = assignment.epoch
            return False
        if assignment.epoch < self._epoch:
            return self._skip(offset, "stale_epoch")
        task = assignment.task
        if not self._seen.first_time(dedupe_key(task.task_id, task.headers), task.attempt):
            return self._skip(offset, "repeated_attempt")
        self.offsets.take(offset)
        invoke = self._invokers.for_type(assignment.task.type)
        if invoke is None:
            self._refuse(offset, assignment, f"no handler for type {assignment.task.type}")
        else:
            deadline = assignment.task.deadline
            urgency = (assignment.task.priority, math.inf if deadline is None else deadline, offset)
            fetched = Fetched(offset, assignment, invoke, time.monotonic())
            heapq.heappush(self._waiting, (*urgency, fetched))
            self._start_waiting()
        return True

    def reject_waiting(self, reason: str) -> None:
        """Refuse every assignment not started yet (a drain): REJECTED, so it is re-queued."""
        while self._waiting:
            fetched = heapq.heappop(self._waiting)[-1]
            self._refuse(fetched.offset, fetched.assignment, reason)
        self._metrics.prefetched.set(0)

    async def wait_idle(self) -> None:
        """Until every running task has ended and every result is written."""
        while self._running or self._writing:
            await asyncio.gather(*self._running, *self._writing, return_exceptions=True)

    def _skip(self, offset: int, reason: str) -> bool:
        self.offsets.take(offset)
        self.offsets.finish(offset)
        self._metrics.skipped.labels(reason).inc()
        return True

    def _refuse(self, offset: int, assignment: Assignment, reason: str) -> None:
        async def write() -> None:
            await self._write(offset, assignment, rejected(reason), now_ms())

        self._spawn(self._writing, write())

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self._config.capacity:
            self._spawn(self._running, self._run(self._next_waiting()))
        self._metrics.prefetched.set(len(self._waiting))
        self._metrics.in_flight.set(len(self._running))

    def _next_waiting(self) -> Fetched:
        """The most urgent waiting assignment, unless the oldest one has been overtaken for
        ``OVERTAKEN_S``: then that one (more urgent work must not starve it for ever)."""
        oldest = min(range(len(self._waiting)), key=lambda index: self._waiting[index][2])
        if time.monotonic() - self._waiting[oldest][-1].admitted_s < OVERTAKEN_S:
            return heapq.heappop(self._waiting)[-1]
        entry = self._waiting[oldest]
        self._waiting[oldest] = self._waiting[-1]
        self._waiting.pop()
        heapq.heapify(self._waiting)
        return entry[-1]

    async def _run(self, fetched: Fetched) -> None:
        self._metrics.started.inc()
        started_at, clock = now_ms(), time.perf_counter()
        outcome = await run_handler(fetched.invoke, fetched.assignment.task)
        self._metrics.run_seconds.observe(time.perf_counter() - clock)
        if await self._write(fetched.offset, fetched.assignment, outcome, started_at):
            self.completed += 1  # run handlers never give REJECTED

    async def _write(
        self, offset: int, assignment: Assignment, outcome: Outcome, started_at: int
    ) -> bool:
        """Write the result, then finish its offset; False if the broker refused it.

        A result not written holds its offset back from every later commit, and the dispatcher
        re-queues the task when its lease runs out.
        """
        result = outcome.result(
            assignment, agent_id=self._config.agent_id, started_at=started_at, finished_at=now_ms()
        )
        try:
            await self._writer.send(
                self._results_topic,
                self._codec.encode(result),
                key=result.task_id,
                partition=assignment.reply_partition,
            )
        except KafkaError as error:
            log.error(
                "result of %s not written, offset %d held back: %s", result.task_id, offset, error
            )
            return False
        self.offsets.finish(offset)
        self._metrics.completed.labels(outcome.status.value).inc()
        return True

    def _spawn(self, into: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        into.add(task)
        task.add_done_callback(lambda done: self._ended(into, done))

    def _ended(self, into: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        into.discard(task)
        self._start_waiting()
        self._wake.set()
