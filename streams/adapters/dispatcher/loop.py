"""The single owner of the :class:`Distributor`: inbound items in, the core's actions out.

Everything here runs on the event loop, one item at a time, so the core is never entered
twice. Inputs arrive decoded (``inputs.py``, ``agents_view.py``); the core's answers go to the
:class:`Executor`. Until the recovered in-flight entries are settled (``recovery.py``), tasks,
retries and results wait at the gate, unacknowledged.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable

from streams.adapters.dispatcher.acks import OrderedAcks, Token
from streams.adapters.dispatcher.agents_view import ViewRecord
from streams.adapters.dispatcher.book import Book, Tracked
from streams.adapters.dispatcher.config import DispatcherConfig
from streams.adapters.dispatcher.executor import Executor
from streams.adapters.dispatcher.recovery import Recovery
from streams.adapters.dispatcher.registrations import Registrations
from streams.core.actions import ResultStatus
from streams.core.agents import Heartbeat
from streams.core.distributor import Distributor
from streams.wire import (
    AgentHeartbeat,
    AgentRegistration,
    Task,
    TaskResult,
    TaskStatus,
    task_to_job,
)
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)

_MIN_SLEEP_MS = 1


class DispatchLoop:
    """Feeds the core and ticks it at ``next_wakeup_ms`` (at least every ``tick_ms``)."""

    def __init__(
        self,
        *,
        core: Distributor,
        book: Book,
        regs: Registrations,
        executor: Executor,
        acks: OrderedAcks,
        config: DispatcherConfig,
        clock: Callable[[], int],
    ) -> None:
        self._core = core
        self._book = book
        self._regs = regs
        self._executor = executor
        self._acks = acks
        self._config = config
        self._clock = clock
        self._recovery = Recovery(core, book, executor, regs, clock)
        self._gate: list[Callable[[], None]] | None = []
        self._recover_by_ms: int | None = None
        self._retries: list[tuple[int, int, Task, Token]] = []
        self._seq = itertools.count()

    @property
    def core(self) -> Distributor:
        return self._core

    @property
    def recovering(self) -> bool:
        return self._gate is not None

    # --- start --------------------------------------------------------------------------------

    def recover(
        self,
        inflight: list[tuple[str, bytes]],
        ended: list[tuple[str, int, int]],
        codec: RecordCodec,
    ) -> int:
        """Take in the recovered tables; the number of in-flight entries to settle."""
        for key, _at_ms, shard in ended[-self._config.dedupe_window :]:
            self._book.ended.add(key, shard)
            self._core.restore_ended(key)
        count = self._recovery.load(inflight, codec)
        self._recover_by_ms = self._clock() + self._config.down_after_ms
        if self._recovery.done:
            self._open()
        return count

    # --- inbound ------------------------------------------------------------------------------

    def task_read(self, task: Task, token: Token) -> None:
        """A valid task from a task topic."""
        self._admit(lambda: self._arrive(task, token, fresh=True))

    def retry_read(self, task: Task, due_ms: int, token: Token) -> None:
        """A task from a retry tier, due at ``due_ms``: kept (unacked) until then."""
        self._admit(lambda: self._wait_retry(task, due_ms, token))

    def result_read(self, result: TaskResult, token: Token) -> None:
        self._admit(lambda: self._result(result, token))

    def malformed(self, raw: bytes, error: str, token: Token) -> None:
        """Bytes that are no valid task or result: dead letter MALFORMED, the rest flows on."""
        self._executor.dead_letter_raw(raw, error, token)

    def view_records(self, records: list[ViewRecord]) -> None:
        """Registrations and heartbeats, in the order the view read them."""
        for record in records:
            if isinstance(record, AgentRegistration):
                self._registration(record)
            else:
                self._heartbeat(record)

    # --- time ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick the core until cancelled."""
        while True:
            now_ms = self._clock()
            self.tick(now_ms)
            await asyncio.sleep(self._sleep_ms(now_ms) / 1000)

    def tick(self, now_ms: int) -> None:
        """Settle the recovery when its time is up, offer due retries, tick the core."""
        if self._recovery_due(now_ms):
            self._open()
        while self._retries and self._retries[0][0] <= now_ms and self._gate is None:
            _, _, task, token = heapq.heappop(self._retries)
            self._arrive(task, token, fresh=False)
        self._executor.run(self._core.tick(now_ms))

    def _recovery_due(self, now_ms: int) -> bool:
        if self._gate is None or self._recover_by_ms is None:
            return False  # recovered already, or not started
        return now_ms >= self._recover_by_ms or self._recovery.done

    def _sleep_ms(self, now_ms: int) -> int:
        wakeups = [now_ms + self._config.tick_ms]
        core_ms = self._core.next_wakeup_ms(now_ms)
        if core_ms is not None:
            wakeups.append(core_ms)
        if self._retries:
            wakeups.append(self._retries[0][0])
        return max(_MIN_SLEEP_MS, min(wakeups) - now_ms)

    # --- internals ----------------------------------------------------------------------------

    def _admit(self, work: Callable[[], None]) -> None:
        if self._gate is None:
            work()
        else:
            self._gate.append(work)

    def _open(self) -> None:
        self._recovery.finish()
        gate, self._gate = self._gate or [], None
        for work in gate:
            work()

    def _arrive(self, task: Task, token: Token, *, fresh: bool) -> None:
        """``fresh``: read from a task topic (else due from a retry tier)."""
        job = task_to_job(task)
        if self._core.is_duplicate(job):
            self._acks.done(token)
            return
        self._book.tasks[task.task_id] = Tracked(task, token.partition, [token], token)
        self._executor.received(task, job, token.partition, fresh=fresh)
        self._executor.run(self._core.task_arrived(job, self._clock()))

    def _wait_retry(self, task: Task, due_ms: int, token: Token) -> None:
        if due_ms <= self._clock():
            self._arrive(task, token, fresh=False)
            return
        heapq.heappush(self._retries, (due_ms, next(self._seq), task, token))

    def _result(self, result: TaskResult, token: Token) -> None:
        """Queue time and deadlines are judged at the agent's ``started_at``, not when the
        result arrives; a REJECTED task never started."""
        lease = self._core.in_flight.get(result.task_id)
        if result.status is not TaskStatus.REJECTED:
            self._core.task_started(
                result.task_id, result.agent_id, result.attempt, result.started_at
            )
        actions = self._core.result(
            result.task_id,
            result.agent_id,
            result.attempt,
            ResultStatus(result.status.value),
            self._clock(),
            result.error,
        )
        if actions and lease is not None:  # accepted: not a stale attempt
            self._executor.result_taken(result, lease.job)
        self._executor.run(actions, cause=token, cause_task=result.task_id)

    def _registration(self, record: AgentRegistration) -> None:
        for agent_id in self._regs.apply(record):
            self._executor.run(self._core.agent_left(agent_id, self._clock()))

    def _heartbeat(self, record: AgentHeartbeat) -> None:
        if self._regs.active(record.agent_id) is None:
            return  # not (or no longer) holding a partition: nothing can be sent to it
        beat = heartbeat_of(record, slots=self._config.slots(record.capacity))
        self._executor.run(self._core.heartbeat(beat, self._clock()))
        if self._gate is not None:
            self._recovery.agent_beat(record.agent_id)


def heartbeat_of(record: AgentHeartbeat, *, slots: int | None = None) -> Heartbeat:
    """The core's view of a heartbeat (``sent_ms`` only orders an agent's own heartbeats);
    ``slots``: the capacity the core counts (``DispatcherConfig.slots``), else the agent's."""
    return Heartbeat(
        agent_id=record.agent_id,
        capacity=record.capacity if slots is None else slots,
        skills=frozenset(record.skills),
        zone=record.zone,
        weight=record.weight,
        cost_per_task=record.cost_per_task,
        status=record.status.value,
        sent_ms=record.sent_at,
    )
