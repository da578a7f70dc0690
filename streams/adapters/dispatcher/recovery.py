"""After a restart: the ``inflight`` entries recovered by Faust become leases again.

An entry is restored as a lease once its agent heartbeats under the registration epoch the
assignment was sent with; if the agent does not come back within ``down_after_ms`` (or came
back under a new epoch, so it will skip the assignment), the task is queued again with the
attempt counted, or dead-lettered when its attempts are spent. Until then the loop holds its
inputs back, so no task takes a slot that a restored lease still occupies.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from streams.adapters.dispatcher.book import Book, Tracked
from streams.adapters.dispatcher.executor import Executor
from streams.adapters.dispatcher.registrations import Registrations
from streams.core.actions import DeadLetter
from streams.core.distributor import Distributor
from streams.core.leases import Lease
from streams.core.model import AgentState, DeadLetterReason
from streams.errors import DecodeError
from streams.wire import Assignment, task_to_job
from streams.wire.codec import RecordCodec

log = logging.getLogger(__name__)


class Recovery:
    """The recovered assignments waiting for their agents, by agent id."""

    def __init__(
        self,
        core: Distributor,
        book: Book,
        executor: Executor,
        regs: Registrations,
        clock: Callable[[], int],
    ) -> None:
        self._core = core
        self._book = book
        self._executor = executor
        self._regs = regs
        self._clock = clock
        self._waiting: dict[str, list[Assignment]] = {}
        self._later: list[tuple[Assignment, str]] = []
        """Requeued only in ``finish``: no slot is taken before every lease is back."""

    @property
    def done(self) -> bool:
        """Every recovered entry's agent has been heard from."""
        return not self._waiting

    def load(self, entries: list[tuple[str, bytes]], codec: RecordCodec) -> int:
        """Track every recovered entry; how many there are."""
        for task_id, value in entries:
            try:
                assignment = codec.decode(value, Assignment)
            except DecodeError as error:
                log.error("inflight entry of %s does not decode, left alone: %s", task_id, error)
                continue
            task = assignment.task
            self._book.tasks[task_id] = Tracked(task, assignment.reply_partition)
            self._book.in_table[task_id] = task.attempt
            self._waiting.setdefault(assignment.agent_id, []).append(assignment)
        return sum(len(waiting) for waiting in self._waiting.values())

    def agent_beat(self, agent_id: str) -> None:
        """The agent heartbeat: restore what it still runs, requeue what it will skip."""
        waiting = self._waiting.pop(agent_id, None)
        registration = self._regs.active(agent_id)
        info = self._core.registry.get(agent_id)
        alive = info is not None and info.state is not AgentState.DOWN
        for assignment in waiting or ():
            if alive and registration is not None and registration.epoch == assignment.epoch:
                self._restore(assignment)
            else:
                self._later.append((assignment, f"agent {agent_id} restarted or stopped"))

    def finish(self) -> None:
        """Requeue what will not be run: entries of agents that did not come back, or came
        back under a new epoch."""
        later, self._later = self._later, []
        for agent_id, assignments in self._waiting.items():
            later += [(item, f"agent {agent_id} did not come back") for item in assignments]
        self._waiting = {}
        for assignment, cause in later:
            self._requeue(assignment, cause)

    def _restore(self, assignment: Assignment) -> None:
        agent_id = assignment.agent_id
        lease = Lease(
            job=task_to_job(assignment.task),
            agent_id=agent_id,
            attempt=assignment.task.attempt,
            epoch=self._core.registry.epoch(agent_id),
            dispatched_ms=assignment.dispatched_at,
            expires_ms=assignment.dispatched_at + assignment.lease_ms,
        )
        self._core.in_flight.restore(lease)

    def _requeue(self, assignment: Assignment, cause: str) -> None:
        task = dataclasses.replace(assignment.task, attempt=assignment.task.attempt + 1)
        job = task_to_job(task)
        now_ms = self._clock()
        if task.attempt >= task.max_attempts:
            reason = DeadLetterReason.MAX_ATTEMPTS
            self._executor.run([DeadLetter(job, reason, cause, task.attempt)])
            return
        self._executor.run(self._core.task_arrived(job, now_ms))
