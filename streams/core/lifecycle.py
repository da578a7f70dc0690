"""One task's state in one place: the lifecycle table of the tasks the distributor knows.

Theory of operation
-------------------
Every live task is one :class:`TaskRecord` in :class:`Lifecycle`, keyed by task id, in exactly
one :class:`Phase`. ``TRANSITIONS`` maps ``(phase, step)`` to the next phase, and nothing else
moves a task: :meth:`Lifecycle.move` looks the step up and raises ``CoreError`` for a step the
table does not allow. ``None`` as a phase is "not known": a task enters from it and leaves to it
when it ends (completed or dead-lettered); the distributor then keeps only its dedupe key, in
its window of ended tasks.

The scheduler's queues and the in-flight leases are *indexes* over these records (ordered for
the release and for expiry), not places of their own: a task is HELD exactly while the
scheduler holds it, IN_FLIGHT exactly while ``InFlight`` holds its lease.

Phases:

- WAITING: read back from a retry tier before it is due; offered to the scheduler then.
- HELD: waiting in the scheduler's queues for a free slot.
- IN_FLIGHT: leased to an agent.
- RECOVERING: leased before a restart; its agent has not been heard from since. Its lease
  counts again once the agent heartbeats as the same incarnation.
- RETRYING: sent to a retry tier, its next attempt counted; remembered until the retry comes
  back, so that an older delivery of the task is dropped meanwhile.
- BEHIND: waiting behind an earlier task of its ordering key (``ordering.py``), out of the
  scheduler; offered to it once every earlier task of the key has ended.

Invariants (checked by the property tests of ``tests/core/test_distributor.py``):

1. A task id is in at most one record, in one phase.
2. Every step a task takes is in ``TRANSITIONS``.
3. A task that ends leaves the table; a delivery of a known or recently ended task is dropped.
   A withdrawn task leaves it too, and is not remembered as ended: its new owner has it.
4. An attempt is counted each time a task leaves an agent without success (TAKE_BACK, RETRY);
   when its attempts are spent it ends in the dead letters, never silently. Two TAKE_BACKs
   count none, as the run was not the task's fault: a rejection for want of a handler, and a
   run stopped to free its slot for a more urgent task (``preemption.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from streams.core.leases import Lease
from streams.core.model import Job
from streams.errors import CoreError


class Phase(enum.Enum):
    """Where a live task is (see the module docstring)."""

    __hash__ = object.__hash__  # members are singletons: identity is equality, and cheaper

    WAITING = "WAITING"
    HELD = "HELD"
    IN_FLIGHT = "IN_FLIGHT"
    RECOVERING = "RECOVERING"
    RETRYING = "RETRYING"
    BEHIND = "BEHIND"


class Step(enum.Enum):
    """What can happen to a task."""

    __hash__ = object.__hash__  # members are singletons: identity is equality, and cheaper

    ARRIVE = "ARRIVE"
    """Offered to the scheduler: read from a task topic, due from a retry tier."""
    WAIT = "WAIT"
    """Read from a retry tier before it is due."""
    PARK = "PARK"
    """Arrived while an earlier task of its ordering key is live: waits behind it."""
    RELEASE = "RELEASE"
    """Placed on an agent's free slot."""
    RECOVER = "RECOVER"
    """Read from durable state after a restart: it was in flight."""
    CONFIRM = "CONFIRM"
    """Its agent came back as the incarnation it was sent to."""
    TAKE_BACK = "TAKE_BACK"
    """Its run is lost (agent down or restarted, lease run out, rejected): queued again."""
    RETRY = "RETRY"
    """Its run failed and may be tried again: sent to a retry tier."""
    END = "END"
    """Completed, or dead-lettered (failed, attempts spent, expired, no capable agent)."""
    WITHDRAW = "WITHDRAW"
    """Handed to another driver (its shard moved to another dispatcher instance): forgotten
    here without ending."""


_P = Phase
_S = Step

TRANSITIONS: Final[Mapping[tuple[Phase | None, Step], Phase | None]] = {
    (None, _S.ARRIVE): _P.HELD,
    (None, _S.WAIT): _P.WAITING,
    (None, _S.RECOVER): _P.RECOVERING,
    (None, _S.END): None,  # expired before it was ever held
    (None, _S.PARK): _P.BEHIND,
    (_P.BEHIND, _S.ARRIVE): _P.HELD,
    (_P.BEHIND, _S.END): None,  # expired the moment its turn came
    (_P.RETRYING, _S.ARRIVE): _P.HELD,
    (_P.RETRYING, _S.WAIT): _P.WAITING,
    (_P.RETRYING, _S.END): None,
    (_P.WAITING, _S.ARRIVE): _P.HELD,
    (_P.WAITING, _S.END): None,
    (_P.HELD, _S.RELEASE): _P.IN_FLIGHT,
    (_P.HELD, _S.END): None,
    (_P.IN_FLIGHT, _S.TAKE_BACK): _P.HELD,
    (_P.IN_FLIGHT, _S.RETRY): _P.RETRYING,
    (_P.IN_FLIGHT, _S.END): None,
    (_P.RECOVERING, _S.CONFIRM): _P.IN_FLIGHT,
    (_P.RECOVERING, _S.TAKE_BACK): _P.HELD,
    (_P.RECOVERING, _S.RETRY): _P.RETRYING,
    (_P.RECOVERING, _S.END): None,
    (_P.WAITING, _S.WITHDRAW): None,
    (_P.HELD, _S.WITHDRAW): None,
    (_P.IN_FLIGHT, _S.WITHDRAW): None,
    (_P.RECOVERING, _S.WITHDRAW): None,
    (_P.RETRYING, _S.WITHDRAW): None,
    (_P.BEHIND, _S.WITHDRAW): None,
}


@dataclass(slots=True)
class TaskRecord:
    """One live task: its job (as of its current or next attempt) and its phase."""

    job: Job
    phase: Phase
    lease: Lease | None = None
    """RECOVERING: the lease it had before the restart (an IN_FLIGHT lease is in ``InFlight``)."""
    started_ms: int | None = None
    """IN_FLIGHT: when its agent started the run, once reported."""
    due_ms: int | None = None
    """WAITING: when its retry is due."""


class Lifecycle:
    """The live tasks by id; every change of phase goes through :meth:`move`."""

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._counts: dict[Phase, int] = dict.fromkeys(Phase, 0)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(list(self._records.values()))

    def get(self, task_id: str) -> TaskRecord | None:
        return self._records.get(task_id)

    def jobs(self) -> list[Job]:
        """The job of every live task (a copy)."""
        return [record.job for record in self._records.values()]

    def count(self, phase: Phase) -> int:
        """How many tasks are in ``phase`` now."""
        return self._counts[phase]

    def move(self, task_id: str, job: Job, step: Step) -> TaskRecord | None:
        """Take ``step`` with the task ``task_id`` (now as ``job``); its record after the step,
        None once it has ended. CoreError if the table does not allow the step."""
        record = self._records.get(task_id)
        before = None if record is None else record.phase
        try:
            after = TRANSITIONS[(before, step)]
        except KeyError:
            shown = "unknown" if before is None else before.value
            raise CoreError(f"task {task_id!r}: {step.value} is not allowed when {shown}") from None
        if before is not None:
            self._counts[before] -= 1
        if after is None:
            if record is not None:
                del self._records[task_id]
            return None
        self._counts[after] += 1
        if record is None:
            record = self._records[task_id] = TaskRecord(job, after)
        else:
            record.job = job
            record.phase = after
            record.lease = record.started_ms = record.due_ms = None
        return record
