"""Runs the assignments read from the agent's partition, never more than its capacity at once.

Each record of the partition is an :class:`AssignmentBatch`. Each assignment in it is admitted
or skipped (stale epoch, attempt already taken), waits for a free slot (the most urgent first:
priority, then deadline, then the order read; the dispatcher may send a few more than the slots
so a freed slot need not wait for it), runs, and has its result queued for its reply partition.

Results go out in batches: the results that end within one turn of the event loop (or within
``result_linger_ms``) leave as one :class:`ResultBatch` record per reply partition. A record's
offset is finished once every result of its batch is on the broker, so commits never pass an
assignment whose result is not written.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from streams.adapters.kafka import record_header
from streams.adapters.metrics import AgentMetrics
from streams.adapters.offsets import OffsetTracker
from streams.adapters.worker.cancel import StopToken, unwatch, watch
from streams.adapters.worker.config import AgentConfig
from streams.adapters.worker.failures import FailureLog
from streams.adapters.worker.handlers import Invoker, Invokers
from streams.adapters.worker.kafka import Writer, now_ms
from streams.adapters.worker.results import Outcome, rejected, run_handler
from streams.core.model import dedupe_key
from streams.core.window import LruMap
from streams.errors import DecodeError, KafkaError
from streams.settings import Settings
from streams.wire import (
    GROUPED_HEADER,
    NO_HANDLER,
    PREEMPTED,
    STOP_HEADER,
    STOP_PREEMPT,
    AgentRegistration,
    Assignment,
    AssignmentBatch,
    RecordCodec,
    ResultBatch,
    Task,
    TaskResult,
    TaskStatus,
)
from streams.wire.limits import by_size, result_bytes

log = logging.getLogger(__name__)

LiveRun = tuple["asyncio.Task[Any] | None", StopToken]
"""A run going on: the asyncio task to cancel (an async handler's; None for one in a thread,
which polls its token) and its stop token."""

OVERTAKEN_S = 2.0
"""A waiting assignment passed over by more urgent ones for this long starts next."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """An admitted assignment waiting for a slot."""

    offset: int
    """Of the record (batch) it came in."""
    assignment: Assignment
    invoke: Invoker
    admitted_s: float
    """``time.monotonic()`` when it was read."""

    @property
    def lease_ends_s(self) -> float:
        """When its lease runs out, on ``time.monotonic()``: counted from when it was read,
        not from when it was sent (``dispatched_at``, the dispatcher's clock), so a skewed clock
        never ends a run early; the dispatcher's lease ends first, by the time in transit."""
        return self.admitted_s + self.assignment.lease_ms / 1000


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
        self._max_output_bytes = settings.max_output_bytes
        self._record_bytes = settings.max_record_bytes
        self._invokers, self._writer, self._metrics, self._wake = invokers, writer, metrics, wake
        self._codec = codec
        self._seen: LruMap[tuple[str, int], None] = LruMap(config.seen_attempts)
        self.offsets = OffsetTracker(claim.start_offset)
        self._open: dict[int, int] = {}
        """Record offset -> its assignments whose result is not written yet."""
        self._waiting: list[tuple[int, float, int, int, Fetched]] = []
        """Heap of (priority, deadline, offset, index, assignment): the most urgent first."""
        self._arrival: deque[Fetched] = deque()
        """Every admitted assignment in the order read; started ones are dropped lazily."""
        self._started: set[int] = set()
        """ids of the admitted assignments started, while still in ``_arrival``."""
        self._read = 0
        self._running: set[asyncio.Task[None]] = set()
        self._live: dict[tuple[str, int], LiveRun] = {}
        """(task id, attempt) of each run going on -> that run."""
        self._past_lease = 0
        """Runs still going after their lease ran out (``StopToken.past_lease``): the dispatcher
        has given the task to another run, so each was told to stop, and its slot is not free
        until it returns."""
        self._stop_asked: LruMap[tuple[str, int], bool] = LruMap(STOPS_KEPT)
        """Runs asked to stop before they started -> whether preempted: reported CANCELLED
        instead of run."""
        self._outbox: dict[int, list[tuple[int, TaskResult]]] = {}
        """Reply partition -> (record offset, result) not written yet."""
        self._flush: asyncio.Handle | None = None
        self._writing = 0
        """Result records written and not answered yet."""
        self._written = asyncio.Event()
        self.completed = 0
        """Attempts run to an end with their result written (rejections not counted)."""
        self.fenced_by: int | None = None
        """The newer epoch seen on the partition: another owner took it over."""
        self.failures = FailureLog(config.agent_id)
        """Logs each failed attempt with its traceback, rate-limited (``failures.py``)."""

    def room(self) -> int:
        """How many more assignments may be read now (free slots plus free prefetch)."""
        limit = self._config.capacity + self._config.prefetch_slots
        return limit - len(self._running) - len(self._waiting)

    def load(self) -> tuple[int, int]:
        """(tasks running now, attempts completed so far), for the heartbeats."""
        return len(self._running), self.completed

    def usable_capacity(self) -> int:
        """The slots the dispatcher may count on: the capacity less the runs past their lease
        (the dispatcher freed their slots when it took their tasks back; a hung handler keeps
        its slot here until it returns)."""
        return max(0, self._config.capacity - self._past_lease)

    def take(self, messages: Sequence[Message]) -> None:
        """Admit or skip the assignments in ``messages`` (one poll's, in partition order), then
        start the most urgent of what waits: every record of the poll is queued before any
        starts, so a later record's more urgent task is not passed over by an earlier one's.
        A record that shows the agent fenced sets ``fenced_by``; the records after it are left.
        """
        grouped: list[str] = []
        for message in messages:
            if not self._take_one(message, grouped):
                break
        self._start_waiting(changed=True)
        if grouped:  # once the runs just started have joined their batches
            asyncio.get_running_loop().call_soon(self._hand_over_groups, grouped)

    def _take_one(self, message: Message, grouped: list[str]) -> bool:
        """Queue the assignments of one record (``grouped`` gets its grouped types); False
        if it shows the agent fenced (``fenced_by`` set, nothing of it queued)."""
        offset = int(message.offset() or 0)
        self.offsets.take(offset)
        try:
            batch = self._codec.decode(message.value() or b"", AssignmentBatch)
        except DecodeError as error:
            log.warning("skipping an undecodable assignment batch at offset %d: %s", offset, error)
            return self._skip(offset, "undecodable")
        stop = record_header(message, STOP_HEADER)  # STOP_PREEMPT: preempted; else a cancel
        if stop is not None:
            for assignment in batch.assignments:
                self._stop(assignment.task, preempted=stop == STOP_PREEMPT.encode())
            self.offsets.finish(offset)
            return True
        fenced = [item.epoch for item in batch.assignments if item.epoch > self._epoch]
        if fenced:
            self.fenced_by = max(fenced)
            return False
        admitted = [item for item in batch.assignments if self._admit(item)]
        if not admitted:
            self.offsets.finish(offset)
            return True
        self._open[offset] = len(admitted)
        for assignment in admitted:
            self._queue(offset, assignment)
        grouped.extend(_grouped_types(message))
        return True

    def _hand_over_groups(self, task_types: list[str]) -> None:
        """The dispatcher gathered these types' tasks for their batch handlers, and waited for
        them: their batches go to the handlers now, not after the handlers' own wait."""
        for task_type in task_types:
            self._invokers.flush_type(task_type)

    def reject_waiting(self, reason: str) -> None:
        """Refuse every assignment not started yet (a drain): REJECTED, so it is re-queued."""
        while self._waiting:
            fetched = heapq.heappop(self._waiting)[-1]
            self._report(fetched.offset, fetched.assignment, rejected(reason), now_ms())
        self._arrival.clear()
        self._started.clear()
        self._metrics.prefetched.set(0)

    async def wait_idle(self) -> None:
        """Until every running task has ended and every result is written."""
        while self._running or self._writing or self._outbox:
            self._send_outbox()
            await asyncio.gather(*self._running, return_exceptions=True)
            if self._writing:
                self._written.clear()
                await self._written.wait()

    # --- admitting -----------------------------------------------------------------------------

    def _admit(self, assignment: Assignment) -> bool:
        """Whether to run it: of this epoch, and an attempt not taken before."""
        if assignment.epoch < self._epoch:
            self._metrics.skipped.labels("stale_epoch").inc()
            return False
        task = assignment.task
        run = (dedupe_key(task.task_id, task.headers), task.attempt)
        if run in self._seen:
            self._metrics.skipped.labels("repeated_attempt").inc()
            return False
        self._seen.put(run, None)
        return True

    def _queue(self, offset: int, assignment: Assignment) -> None:
        task = assignment.task
        invoke = self._invokers.for_type(task.type)
        if invoke is None:
            self._report(offset, assignment, rejected(f"{NO_HANDLER}{task.type}"), now_ms())
            return
        deadline = math.inf if task.deadline is None else task.deadline
        self._read += 1
        fetched = Fetched(offset, assignment, invoke, time.monotonic())
        heapq.heappush(self._waiting, (task.priority, deadline, offset, self._read, fetched))
        self._arrival.append(fetched)

    def _skip(self, offset: int, reason: str) -> bool:
        self.offsets.finish(offset)
        self._metrics.skipped.labels(reason).inc()
        return True

    # --- running -------------------------------------------------------------------------------

    def _start_waiting(self, *, changed: bool = False) -> None:
        """Start what waits, while slots are free; the gauges are set when something changed
        (``changed``: assignments were admitted or a run ended)."""
        started = False
        while self._waiting and len(self._running) < self._config.capacity:
            self._spawn(self._running, self._run(self._next_waiting()))
            started = True
        if started or changed:
            self._metrics.prefetched.set(len(self._waiting))
            self._metrics.in_flight.set(len(self._running))

    def _next_waiting(self) -> Fetched:
        """The most urgent waiting assignment, unless the oldest one has been overtaken for
        ``OVERTAKEN_S``: then that one (more urgent work must not starve it for ever)."""
        arrival, started = self._arrival, self._started
        while id(arrival[0]) in started:  # started already: forget it here too
            started.discard(id(arrival.popleft()))
        oldest = arrival[0]
        if time.monotonic() - oldest.admitted_s < OVERTAKEN_S:
            chosen = heapq.heappop(self._waiting)[-1]
        else:
            waiting = self._waiting
            index = next(i for i, entry in enumerate(waiting) if entry[-1] is oldest)
            waiting[index] = waiting[-1]
            waiting.pop()
            heapq.heapify(waiting)
            chosen = oldest
        started.add(id(chosen))
        return chosen

    async def _run(self, fetched: Fetched) -> None:
        task = fetched.assignment.task
        run = (task.task_id, task.attempt)
        started_at, clock = now_ms(), time.perf_counter()
        if run in self._stop_asked:  # cancelled or preempted while it waited here
            preempted = self._stop_asked.get(run)
            self._stop_asked.discard(run)
            stopped = _PREEMPTED if preempted else _CANCELLED
            self._report(fetched.offset, fetched.assignment, stopped, started_at)
            return
        if time.monotonic() >= fetched.lease_ends_s:  # given to another run by now
            self._report(fetched.offset, fetched.assignment, _LEASE_RAN_OUT, started_at)
            return
        self._metrics.started.inc()
        token = StopToken()
        on_loop = self._invokers.on_loop(fetched.invoke)
        entry: LiveRun = (asyncio.current_task() if on_loop else None, token)
        self._live[run] = entry
        watching = watch(token)
        lease_timer = self._watch_lease(entry, fetched)
        interrupted = False
        try:
            outcome = await run_handler(fetched.invoke, task, self._max_output_bytes, self.failures)
        except asyncio.CancelledError:
            if not token.stopped:
                raise  # the agent stopping, not this task's cancel
            outcome, interrupted = _CANCELLED, True
        finally:
            lease_timer.cancel()
            unwatch(watching)
            if self._live.get(run) is entry:  # a run of the same attempt may have followed
                del self._live[run]
            if token.past_lease:
                self._past_lease -= 1
                self._metrics.past_lease.set(self._past_lease)
        self._metrics.run_seconds.observe(time.perf_counter() - clock)
        instead = _stopped_outcome(token, cut_short=interrupted or token.noticed)
        self._report(fetched.offset, fetched.assignment, instead or outcome, started_at)

    def _watch_lease(self, run: LiveRun, fetched: Fetched) -> asyncio.TimerHandle:
        """Stop the run when its lease runs out: the dispatcher then gives the task to another
        run, and two must not go on at once. The timer holds this run's own entry (a run of
        the same attempt may follow it in ``_live``), and is cancelled when the run ends."""
        delay_s = max(0.0, fetched.lease_ends_s - time.monotonic())
        loop = asyncio.get_running_loop()
        return loop.call_later(delay_s, self._lease_ran_out, run, fetched.assignment)

    def _lease_ran_out(self, run: LiveRun, assignment: Assignment) -> None:
        asyncio_task, token = run
        self._past_lease += 1
        self._metrics.past_lease.set(self._past_lease)
        token.past_lease = token.stopped = True
        if asyncio_task is not None:
            asyncio_task.cancel()
        log.warning(
            "task %s (attempt %d) still runs after its lease of %d ms: told to stop; its slot "
            "stays taken until the handler returns",
            assignment.task.task_id,
            assignment.task.attempt,
            assignment.lease_ms,
        )

    def _stop(self, task: Task, *, preempted: bool) -> None:
        """The dispatcher asks to stop a run (its task was cancelled, or preempted): cancel it
        if it runs, skip it when it would start. A preempted task's attempt may come back to
        run again: it is no longer one seen here."""
        run = (task.task_id, task.attempt)
        live = self._live.get(run)
        if live is None:
            waiting = self._take_waiting(run)
            if waiting is None:  # not here yet (or ended): skipped when it would start
                self._stop_asked.put(run, preempted)
            else:  # its result now, not once a slot frees: the slot is wanted
                stopped = _PREEMPTED if preempted else _CANCELLED
                self._report(waiting.offset, waiting.assignment, stopped, now_ms())
            return
        asyncio_task, token = live
        if token.stopped:
            return  # told already (a cancel after a preemption: the dispatcher knows both)
        token.stopped = True
        token.preempted = preempted
        if asyncio_task is not None:
            asyncio_task.cancel()
        why = "preempted" if preempted else "cancelled"
        log.info("task %s %s: its run was told to stop", task.task_id, why)

    def _take_waiting(self, run: tuple[str, int]) -> Fetched | None:
        """Take the assignment of ``run`` out of those waiting for a slot (None: not there)."""
        waiting = self._waiting
        for index, entry in enumerate(waiting):
            fetched = entry[-1]
            task = fetched.assignment.task
            if (task.task_id, task.attempt) == run:
                waiting[index] = waiting[-1]
                waiting.pop()
                heapq.heapify(waiting)
                self._started.add(id(fetched))  # dropped from ``_arrival`` lazily, as started
                self._metrics.prefetched.set(len(waiting))
                return fetched
        return None

    # --- results -------------------------------------------------------------------------------

    def _report(
        self, offset: int, assignment: Assignment, outcome: Outcome, started_at: int
    ) -> None:
        """Queue the result for its reply partition; sent with the others of this turn. A
        preempted run's attempt will be sent again: from now on it is not one seen here (not
        before: a run of it still going must not have a twin)."""
        if outcome is _PREEMPTED:
            task = assignment.task
            self._seen.discard((dedupe_key(task.task_id, task.headers), task.attempt))
        result = outcome.result(
            assignment, agent_id=self._config.agent_id, started_at=started_at, finished_at=now_ms()
        )
        self._outbox.setdefault(assignment.reply_partition, []).append((offset, result))
        if self._flush is None:
            loop = asyncio.get_running_loop()
            linger_s = self._config.result_linger_ms / 1000
            self._flush = (
                loop.call_later(linger_s, self._send_outbox)
                if linger_s > 0
                else loop.call_soon(self._send_outbox)
            )

    def _send_outbox(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        outbox, self._outbox = self._outbox, {}
        for partition, queued in outbox.items():
            for items in by_size(queued, _item_bytes, self._record_bytes):
                batch = ResultBatch(results=tuple(result for _, result in items))
                self._writing += 1
                self._writer.send_then(
                    self._results_topic,
                    self._codec.encode(batch),
                    key=self._config.agent_id,
                    partition=partition,
                    then=functools.partial(self._results_written, items),
                )

    def _results_written(
        self, items: list[tuple[int, TaskResult]], outcome: int | KafkaError
    ) -> None:
        """Finish what a batch of results holds back; a batch the broker refused holds its
        offsets back from every later commit, and the dispatcher re-queues its tasks when
        their leases run out."""
        self._writing -= 1
        if not self._writing:
            self._written.set()
        if isinstance(outcome, KafkaError):
            log.error("%d result(s) not written, their offsets held back: %s", len(items), outcome)
            return
        completed = self._metrics.completed_by_status
        for offset, result in items:
            completed[result.status.value].inc()
            if result.status is not TaskStatus.REJECTED:
                self.completed += 1
            left = self._open[offset] - 1
            if left:
                self._open[offset] = left
            else:
                del self._open[offset]
                self.offsets.finish(offset)
        self._wake.set()

    def _spawn(self, into: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        into.add(task)
        task.add_done_callback(lambda done: self._ended(into, done))

    def _ended(self, into: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        into.discard(task)
        self._start_waiting(changed=True)
        self._wake.set()


def _stopped_outcome(token: StopToken, *, cut_short: bool) -> Outcome | None:
    """What a run told to stop reports instead of its handler's outcome (None: its own).

    A cancel ends the task whatever the handler did after it: CANCELLED. A preemption or a
    lease that ran out requeues the task, so a run that was not cut short (not interrupted, and
    its handler never saw the stop) keeps its outcome: a success stands rather than run again."""
    if not token.stopped:
        return None
    if not token.preempted and not token.past_lease:
        return _CANCELLED
    if not cut_short:
        return None
    return _PAST_LEASE if token.past_lease else _PREEMPTED


def _grouped_types(message: Message) -> list[str]:
    """The task types the record's ``GROUPED_HEADER`` names (none without it)."""
    value = record_header(message, GROUPED_HEADER)
    return value.decode("utf-8", errors="replace").split(",") if value else []


_CANCELLED = Outcome(TaskStatus.CANCELLED, error="cancelled")
_PREEMPTED = Outcome(TaskStatus.CANCELLED, error=PREEMPTED)
_PAST_LEASE = Outcome(TaskStatus.RETRYABLE, error="stopped: it ran past its lease")
"""The dispatcher took this run's task back when the lease ran out, so it drops the result;
should the lease have been extended meanwhile, the task is retried, as when a run fails."""
_LEASE_RAN_OUT = Outcome(TaskStatus.RETRYABLE, error="not started: its lease ran out first")
STOPS_KEPT = 10_000
"""Stops of runs not started yet that are remembered (the oldest forgotten first)."""


def _item_bytes(item: tuple[int, TaskResult]) -> int:
    return result_bytes(item[1])
