"""The scheduler: holds ready tasks and releases each only when an agent can take it now.

Theory of operation
-------------------
Tasks come in by :meth:`Scheduler.offer`, wait in per-class queues (``queues.py``), and leave
the scheduler exactly once, by one of:

- :meth:`~Scheduler.release`: the placer put it on an agent (late binding: a free slot);
- :meth:`~Scheduler.expire`: reported ``Removed(EXPIRED)`` once past its last start time, or
  ``Removed(NO_CAPABLE_AGENT)`` once it waited ``no_capable_agent_timeout_ms`` with no capable
  agent at all (``capability.py``);
- :meth:`~Scheduler.remove`: cancelled by the caller.

Release order. Until the limit is reached or nothing is placeable, take the queue that comes
first by:

1. effective priority (``priority.py``): escalated (-1), then levels after aging;
2. within it, the tenant with the smallest weighted fair-share tag (``fairness.py``) among those
   whose quotas admit one more (``quotas.py``);
3. within that tenant, the queue whose head comes first by (last start, submitted, seq);

skipping queues whose class is blocked in this call. Its head goes to ``placer.place``: an
agent id releases it; ``None`` (busy) or ``NEVER`` (no capable agent) blocks the class until the
call ends, since within a call slots are only taken, never freed. A job of effective priority
1 or more is not placed while ``free_slots <= round(reserved_top_share * total_slots)``.

Invariants (each checked by a property test in ``tests/core/test_scheduler_*.py``):

- Conservation: every offered task is rejected at the door (``DUPLICATE``, ``EXPIRED``) or is,
  at any time, in exactly one of: held, released, removed (reported by ``expire``), cancelled.
  A task id is never held twice.
- No expired release: each timed call first takes the tasks past their last start time out of
  the queues (``release`` parks them; the next ``expire`` reports them, and
  ``next_wakeup_ms`` returns ``now_ms`` while any are parked). Time is fixed within a call, so
  a placed head is never expired.
- Time never runs backwards: a ``now_ms`` below one already seen is read as that one.
- No inversion: without tenant quotas, a task is released to agent A only if no waiting task
  of a better effective priority could run on A: that task's class was tried first in this
  call and found no free capable agent, and A was free then too (slots only shrink within a
  call). With ``aging_ms=None`` and ``escalation_ms=0`` effective priority is the level: zero
  priority inversions by construction. Quotas are the one deliberate exception.
- Back-pressure: ``paused`` turns True when ``held >= max_held`` and False again only when
  ``held <= resume_at``; offers are held regardless (nothing is dropped).
- Determinism: no clock, no randomness, no iteration over hash-ordered sets; the same calls give
  the same answers in any process.

Aging bound. Let ``A = aging_ms`` and let task ``x`` of level ``p <= levels-1`` be submitted at
``s``; suppose no task has a last start time (no deadline or TTL, hence no escalation) and
there is one tenant. From ``t* = s + p*A`` on, ``x``'s queue stands at effective priority 0:
its head comes first by (submitted, seq), so it was submitted no later than ``x`` and has aged
at least as much. By the no-inversion argument, every task released at ``t >= t*`` to an agent
that could run ``x`` comes before ``x`` by (submitted, seq). If tasks are offered in submission
order, those are among the ``N(x)`` tasks submitted before ``x`` and still held at ``t*``. So
``x`` waits at most ``(levels-1)*A`` plus the time its capable agents take to start ``N(x)+1``
tasks. With several tenants the top level is shared by weight: while backlogged there, ``x``'s
tenant gets within one release of its share ``w_x / sum(w)``, stretching that drain by at most
``sum(w) / w_x``. A task with a deadline may overtake ``x`` (EDF is the policy within a level).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from streams.core.model import DeadLetterReason, Job
from streams.core.scheduling.capability import NoCapableTracker
from streams.core.scheduling.config import SchedulerConfig
from streams.core.scheduling.expiry import ExpiryIndex
from streams.core.scheduling.fairness import FairShare
from streams.core.scheduling.levels import LevelIndex
from streams.core.scheduling.outcomes import OfferResult, Released, Removed
from streams.core.scheduling.placement import Placer
from streams.core.scheduling.priority import ESCALATED, evaluate
from streams.core.scheduling.queues import (
    ClassKey,
    HeldTask,
    QueueKey,
    TaskQueue,
    class_of,
)
from streams.core.scheduling.quotas import TenantQuotas
from streams.errors import CoreError

_FRONT = operator.attrgetter("front")

_DAWN_MS = -(2**62)
"""Before any call: every real ``now_ms`` is later."""


@dataclass(slots=True)
class _Round:
    """What one release call has learned; true only while ``now_ms`` and the slots stand still."""

    now_ms: int
    limit: int
    released: list[Released] = field(default_factory=list)
    blocked: set[ClassKey] = field(default_factory=set)
    """Classes whose head found no free capable agent."""
    refused: set[str] = field(default_factory=set)
    """Tenants at their in-flight limit or out of rate tokens."""
    exhausted: set[int] = field(default_factory=set)
    """Effective priorities with nothing placeable left."""
    top_only: bool = False
    """Reserved capacity reached: only escalated and effective priority 0 may still go."""


class HeldObserver(Protocol):
    """Told of every task the scheduler starts holding and of every one that leaves it
    (released, removed, expired: ``alive`` is then False); the grouping counts them by type."""

    def held(self, task: HeldTask) -> None: ...

    def left(self, task: HeldTask) -> None: ...


class Scheduler:
    """Holds ready tasks; releases them by priority, deadline and fair share; see the module."""

    def __init__(self, config: SchedulerConfig, *, observer: HeldObserver | None = None) -> None:
        self._config = config
        self._observer = observer
        self._now_ms = _DAWN_MS
        self._seq = 0
        self._tasks: dict[str, HeldTask] = {}
        self._queues: dict[QueueKey, TaskQueue] = {}
        self._index = LevelIndex(config.levels)
        self._expiry = ExpiryIndex()
        self._orphans = NoCapableTracker(config.no_capable_agent_timeout_ms)
        self._fair = FairShare(config.tenant_weights, config.levels)
        bursts = {tenant: config.burst_of(tenant) for tenant in config.tenant_max_rate_per_s}
        self._quotas = TenantQuotas(
            config.tenant_max_in_flight, config.tenant_max_rate_per_s, bursts
        )
        self._parked: dict[str, Removed] = {}
        self._depth = [0] * config.levels
        self._resume_at = config.resume_threshold
        self._paused = False

    # --- state -------------------------------------------------------------------------------

    @property
    def config(self) -> SchedulerConfig:
        return self._config

    @property
    def held(self) -> int:
        """Tasks waiting in the queues (not counting expired ones awaiting ``expire``)."""
        return len(self._tasks)

    @property
    def paused(self) -> bool:
        """Back-pressure: True from ``held >= max_held`` until ``held <= resume_at``."""
        return self._paused

    def depth_by_priority(self) -> dict[int, int]:
        """Held tasks per submitted priority level, every level present."""
        return dict(enumerate(self._depth))

    def without_capable_agent(self) -> dict[str, int]:
        """Held tasks no live agent can run (no agent with their skills, target or a handler
        for their type), per task type: they wait for one until ``no_capable_agent_timeout_ms``
        or their own TTL."""
        return self._orphans.waiting_by_type()

    def held_of_type(self, task_type: str) -> list[HeldTask]:
        """The held tasks of ``task_type`` (walks every held task)."""
        return [task for task in self._tasks.values() if task.job.task_type == task_type]

    def in_flight(self, tenant: str) -> int:
        """Released and unfinished tasks of ``tenant`` (counted for tenants with a limit)."""
        return self._quotas.in_flight(tenant)

    # --- events ------------------------------------------------------------------------------

    def offer(self, job: Job, now_ms: int) -> OfferResult:
        """Hold ``job`` until an agent can take it; never drops it, even when paused."""
        now_ms = self._clock(now_ms)
        if not 0 <= job.priority < self._config.levels:
            raise CoreError(
                f"task {job.task_id!r} has priority {job.priority}; "
                f"levels are 0..{self._config.levels - 1}"
            )
        if self.holds(job.task_id):
            return OfferResult.DUPLICATE
        last_start_ms = job.last_start_ms()
        if last_start_ms is not None and now_ms > last_start_ms:
            return OfferResult.EXPIRED
        self._hold(job, now_ms, last_start_ms)
        return OfferResult.HELD

    def release(self, now_ms: int, placer: Placer, limit: int | None = None) -> list[Released]:
        """Place waiting tasks while the placer finds agents, best first; at most ``limit``."""
        now_ms = self._advance(now_ms)
        self._quotas.start_round(now_ms)
        attempt = _Round(now_ms, len(self._tasks) if limit is None else limit)
        while len(attempt.released) < attempt.limit:
            candidate = self._next_candidate(attempt)
            if candidate is None:
                break
            self._try_place(candidate[0], candidate[1], placer, attempt)
        return attempt.released

    def expire(self, now_ms: int) -> list[Removed]:
        """Take out and report the tasks expired or without a capable agent for too long."""
        now_ms = self._advance(now_ms)
        for task in self._orphans.due():
            self._drop(task, DeadLetterReason.NO_CAPABLE_AGENT, now_ms)
        removed = list(self._parked.values())
        self._parked.clear()
        return removed

    def task_finished(self, job: Job) -> None:
        """A released ``job`` ended or was requeued: its tenant has one fewer in flight."""
        self._quotas.finished(job)

    def remove(self, task_id: str) -> Job | None:
        """Cancel a held task; None if it is not held (released, removed or unknown)."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        queue = task.queue
        queue.discard(task)
        self._forget(task)
        self._refresh(queue, self._now_ms)
        return task.job

    def claim(self, task_id: str, agent_id: str, now_ms: int) -> Released | None:
        """Release the held ``task_id`` to ``agent_id`` out of turn (a slot freed for it by
        preemption), counted as any release (quotas, fair share); None if it is not held."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        now_ms = self._clock(now_ms)
        job = task.job
        eff, _ = evaluate(
            job, now_ms, aging_ms=self._config.aging_ms, escalation_ms=self._config.escalation_ms
        )
        queue = task.queue
        queue.discard(task)
        self._forget(task)
        self._refresh(queue, now_ms)
        self._quotas.released(job, now_ms)
        self._fair.charge(eff, job.tenant)
        self._orphans.saw_capable(queue.cls)
        return Released(job, agent_id, eff, max(0, now_ms - job.submitted_ms))

    # --- queries -----------------------------------------------------------------------------

    def admits(self, job: Job, now_ms: int) -> bool:
        """Whether the tenant quotas let ``job`` be released now (a freed slot could serve it)."""
        tenant = job.tenant
        return tenant not in self._quotas.limited or self._quotas.admits(tenant, now_ms)

    def holds(self, task_id: str) -> bool:
        """Whether ``task_id`` is held (or awaits its expiry report): offering it is a DUPLICATE."""
        return task_id in self._tasks or task_id in self._parked

    def has_waiting(self, better_than: int, can_run: Callable[[Job], bool]) -> bool:
        """Is a task of effective priority below ``better_than`` waiting that ``can_run``?

        ``can_run`` must depend only on skills and target (as ``AgentInfo.can_run`` does): one
        head per queue is asked. Effective priorities are those of the last timed call.
        """
        for eff in range(ESCALATED, min(better_than, self._config.levels)):
            for queues in self._index.tier(eff).values():
                if any(can_run(queue.head.job) for queue in queues.values()):
                    return True
        return False

    def next_wakeup_ms(self, now_ms: int) -> int | None:
        """The earliest time at or after ``now_ms`` at which something changes by itself.

        An aging step, an escalation, an expiry, a no-capable-agent timeout or a rate token;
        ``now_ms`` if expired tasks await ``expire``; None if nothing will change until an event.
        """
        now_ms = max(now_ms, self._now_ms)
        if self._parked:
            return now_ms
        candidates = (
            self._expiry.next_ms(),
            self._index.next_ms(),
            self._orphans.next_ms(now_ms),
            self._quotas.next_token_ms(),
        )
        times = [at_ms for at_ms in candidates if at_ms is not None]
        return max(now_ms, min(times)) if times else None

    # --- holding and forgetting --------------------------------------------------------------

    def _clock(self, now_ms: int) -> int:
        if now_ms > self._now_ms:
            self._now_ms = now_ms
        return self._now_ms

    def _advance(self, now_ms: int) -> int:
        """Move the clock: park the expired tasks, re-evaluate the queues whose timer is due."""
        now_ms = self._clock(now_ms)
        for task in self._expiry.pop_expired(now_ms):
            self._drop(task, DeadLetterReason.EXPIRED, now_ms)
        for queue in self._index.due(now_ms):
            if queue.alive:
                self._refresh(queue, now_ms)
        return now_ms

    def _hold(self, job: Job, now_ms: int, last_start_ms: int | None) -> None:
        cls = class_of(job)
        key = (job.priority, job.tenant, cls)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = TaskQueue(key)
        self._seq += 1
        task = HeldTask(job, self._seq, now_ms, queue)
        queue.push(task)
        self._tasks[job.task_id] = task
        self._depth[job.priority] += 1
        if last_start_ms is not None:
            self._expiry.add(task, last_start_ms, len(self._tasks))
        self._orphans.offered(task, cls)
        if self._observer is not None:
            self._observer.held(task)
        if queue.head is task:
            self._refresh(queue, now_ms)
        if len(self._tasks) >= self._config.max_held:
            self._paused = True

    def _forget(self, task: HeldTask) -> None:
        """Bookkeeping for a task that has just left its queue."""
        job = task.job
        del self._tasks[job.task_id]
        self._depth[job.priority] -= 1
        if self._observer is not None:
            self._observer.left(task)
        if self._paused and len(self._tasks) <= self._resume_at:
            self._paused = False

    def _drop(self, task: HeldTask, reason: DeadLetterReason, now_ms: int) -> None:
        """Take ``task`` out for the dead letters; the next ``expire`` reports it."""
        queue = task.queue
        queue.discard(task)
        self._forget(task)
        self._refresh(queue, now_ms)
        self._parked[task.job.task_id] = Removed(task.job, reason)

    def _refresh(self, queue: TaskQueue, now_ms: int) -> None:
        """Re-index ``queue`` after its head changed or its timer came due."""
        if not queue:
            self._index.move(queue, None)
            queue.close()
            del self._queues[queue.key]
            return
        eff, change_ms = evaluate(
            queue.head.job,
            now_ms,
            aging_ms=self._config.aging_ms,
            escalation_ms=self._config.escalation_ms,
        )
        self._index.move(queue, eff)
        if change_ms is not None:
            self._index.schedule(queue, change_ms)

    def _tasks_of(self, cls: ClassKey) -> Iterator[HeldTask]:
        for queue in self._queues.values():
            if queue.cls == cls:
                yield from queue.tasks()

    # --- releasing ---------------------------------------------------------------------------

    def _next_candidate(self, attempt: _Round) -> tuple[int, TaskQueue] | None:
        """The best queue still placeable in this call, with its effective priority."""
        stop = 1 if attempt.top_only else self._config.levels
        for eff in range(ESCALATED, stop):
            if eff in attempt.exhausted or not self._index.tier(eff):
                continue
            queue = self._pick(eff, attempt)
            if queue is not None:
                return eff, queue
            attempt.exhausted.add(eff)
        return None

    def _pick(self, eff: int, attempt: _Round) -> TaskQueue | None:
        """At ``eff``: the fair-share tenant's earliest unblocked queue, quotas permitting."""
        best: TaskQueue | None = None
        best_tag = (float("inf"), "")
        for tenant, queues in self._index.tier(eff).items():
            if tenant in attempt.refused:
                continue
            tag = (self._fair.tag(eff, tenant), tenant)
            if tag >= best_tag:
                continue
            if tenant in self._quotas.limited and not self._quotas.admits(tenant, attempt.now_ms):
                attempt.refused.add(tenant)
                continue
            queue = _earliest_unblocked(queues, attempt.blocked)
            if queue is not None:
                best, best_tag = queue, tag
        return best

    def _try_place(self, eff: int, queue: TaskQueue, placer: Placer, attempt: _Round) -> None:
        if eff >= 1 and self._reserve_reached(placer):
            attempt.top_only = True
            return
        placed = placer.place(queue.head.job)
        if isinstance(placed, str):
            attempt.released.append(self._take(queue, placed, eff, attempt.now_ms))
            if queue.eff is not None:  # its new head may stand where nothing was placeable
                attempt.exhausted.discard(queue.eff)
            return
        attempt.blocked.add(queue.cls)
        if placed is None:
            self._orphans.saw_capable(queue.cls)
        else:
            self._orphans.saw_never(queue.cls, attempt.now_ms, self._tasks_of)

    def _reserve_reached(self, placer: Placer) -> bool:
        share = self._config.reserved_top_share
        return share > 0.0 and placer.free_slots <= round(share * placer.total_slots)

    def _take(self, queue: TaskQueue, agent_id: str, eff: int, now_ms: int) -> Released:
        task = queue.pop()
        self._forget(task)
        self._refresh(queue, now_ms)
        job = task.job
        self._quotas.released(job, now_ms)
        self._fair.charge(eff, job.tenant)
        self._orphans.saw_capable(queue.cls)
        return Released(job, agent_id, eff, max(0, now_ms - job.submitted_ms))


def _earliest_unblocked(
    queues: dict[QueueKey, TaskQueue], blocked: set[ClassKey]
) -> TaskQueue | None:
    """The queue whose head comes first, among those whose class is not blocked."""
    if not blocked:
        return min(queues.values(), key=_FRONT)
    best: TaskQueue | None = None
    for queue in queues.values():
        if queue.cls not in blocked and (best is None or queue.front < best.front):
            best = queue
    return best
