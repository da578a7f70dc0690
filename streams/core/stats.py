"""Statistics of a distribution run: queue times, utilization, balance, deadlines.

Pure accumulators for the simulator and the dispatcher: every event comes in with its time,
and ``summary(now_ms)`` computes the figures at that time. Definitions:

- *Queue time* is submitted -> first start of a task, *dispatch latency* submitted -> first
  dispatch; both are counted once per task (retries and failovers do not add samples), and
  a task counts only if ``task_received`` saw it first.
- *Available* slot-time is an agent's capacity integrated over time (report capacity 0 while
  it is DOWN or gone). *Busy* slot-time integrates ``min(held, capacity)``, where ``held`` is
  the number of tasks dispatched to it and not finished: a slot is busy from dispatch to finish,
  as the scheduler counts in-flight work, and an agent never counts as more than fully busy,
  nor busy while it has no capacity. Utilization is busy over available, hence in [0, 1].
  A dispatch is closed by ``task_finished`` (a status such as ``LOST`` serves for a failover),
  a dead letter, or a later dispatch of the same task. Slot-time is integrated as events come,
  so give each agent's events in time order: one stamped before the agent's latest event is
  counted at that latest time (a skewed clock cannot make time run backwards).
- A task with a deadline *meets* it iff its first start is at or before ``deadline_ms``; one
  dead-lettered unstarted, or still waiting past its deadline, misses it.
- Quantiles are *nearest-rank*: the smallest sample with at least p % of the samples at or
  below it (so always a real sample) while a series holds at most ``EXACT_SAMPLES``; past
  that, within ``SKETCH_ACCURACY`` (relative) of it, so memory stays bounded. Means are
  always exact. Statistics of no samples are ``None``.
- *Breakdowns* count tasks by priority, by task type and by tenant (received, first starts and
  their queue time, succeeded, dead-lettered): exact integers, so the figures of any interval
  are the difference of two summaries. Types and tenants come from producers: the first
  ``BREAKDOWN_KEYS`` of each are counted apart, every later one under ``OTHER``.
- *Demand* counts tasks by what they need of an agent (required skills, preferred zone):
  received, and *waiting* (received, not started yet, not ended): what an autoscaler sizes pools
  from (``scaling.py``) and what the bottleneck verdict weighs (``bottleneck.py``). Read it with
  ``demand()``, cheap (no summary). The first ``BREAKDOWN_KEYS`` needs are counted apart, later
  ones under ``OTHER_NEED``.
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Hashable, ItemsView, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from streams.core.model import DeadLetterReason, Job
from streams.errors import ConfigError, CoreError

SUCCEEDED = "SUCCEEDED"
"""The ``task_finished`` status that counts as completed."""


def nearest_rank(sorted_values: Sequence[int], percent: int) -> int:
    """The nearest-rank ``percent``-th percentile (1..100) of non-empty, sorted samples."""
    if not sorted_values or not 0 < percent <= 100:
        raise CoreError(f"nearest_rank needs samples and 0 < percent <= 100, got {percent}")
    rank = -(-percent * len(sorted_values) // 100)
    return sorted_values[rank - 1]


EXACT_SAMPLES = 100_000
"""Samples a series keeps exactly; past this it folds them into a log-bucket sketch, so a
long-running dispatcher's statistics stay bounded (a few KB per series)."""
SKETCH_ACCURACY = 0.005
"""Relative error of a sketched quantile: within 0.5% of a true sample's value."""
_GAMMA = (1 + SKETCH_ACCURACY) / (1 - SKETCH_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)


class Series:
    """Integer samples (ms) with an exact total and count, and quantiles: exact (nearest-rank,
    on a cached sorted copy) up to ``exact_samples``, then from a sketch in the manner of
    DDSketch (Masson et al., 2019): each bucket spans a factor gamma and answers with a value
    within ``SKETCH_ACCURACY`` of every value it holds."""

    __slots__ = ("_count", "_exact_samples", "_sketch", "_sorted", "_total", "_values")

    def __init__(self, exact_samples: int = EXACT_SAMPLES) -> None:
        self._values = array("q")
        self._sorted = array("q")
        self._total = 0
        self._count = 0
        self._exact_samples = exact_samples
        self._sketch: dict[int, int] | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def stored(self) -> int:
        """Entries held in memory: samples while exact, buckets once sketched."""
        return len(self._values) if self._sketch is None else len(self._sketch)

    @property
    def exact(self) -> bool:
        """Whether quantiles are still exact samples (not yet sketched)."""
        return self._sketch is None

    def add(self, value_ms: int) -> None:
        self._total += value_ms
        self._count += 1
        if self._sketch is not None:
            _bucket_add(self._sketch, value_ms)
            return
        self._values.append(value_ms)
        if len(self._values) > self._exact_samples:
            self._sketch = {}
            for value in self._values:
                _bucket_add(self._sketch, value)
            self._values, self._sorted = array("q"), array("q")

    def mean(self) -> float | None:
        return self._total / self._count if self._count else None

    def quantile(self, percent: int) -> int | None:
        if not self._count:
            return None
        if self._sketch is not None:
            return _sketch_quantile(self._sketch, self._count, percent)
        if len(self._sorted) != len(self._values):
            # Sorted prefix + new tail: Timsort merges the two runs in linear time.
            merged = self._sorted + self._values[len(self._sorted) :]
            self._sorted = array("q", sorted(merged))
        return nearest_rank(self._sorted, percent)


def _bucket(value_ms: int) -> int:
    """Bucket 0 holds 0 (and below); bucket ``i >= 1`` holds ``(gamma^(i-2), gamma^(i-1)]``."""
    if value_ms <= 0:
        return 0
    return math.ceil(math.log(value_ms) / _LOG_GAMMA) + 1


def _bucket_add(sketch: dict[int, int], value_ms: int) -> None:
    index = _bucket(value_ms)
    sketch[index] = sketch.get(index, 0) + 1


def _sketch_quantile(sketch: dict[int, int], count: int, percent: int) -> int:
    """The nearest-rank quantile's bucket, answered with the value in the middle of it (in
    relative terms), rounded to the nearest integer ms."""
    if not 0 < percent <= 100:
        raise CoreError(f"quantile needs 0 < percent <= 100, got {percent}")
    rank = -(-percent * count // 100)
    seen = 0
    for index in sorted(sketch):
        seen += sketch[index]
        if seen >= rank:
            break
    if index == 0:
        return 0
    upper = _GAMMA ** (index - 1)
    return round(2 * upper / (_GAMMA + 1))


BREAKDOWN_KEYS = 20
"""Task types (and, apart, tenants) a breakdown counts under their own name: the first ones
seen. A producer sending a new type with every task grows no breakdown past this."""
OTHER = "other"
"""The breakdown key of every type (or tenant) past the first ``BREAKDOWN_KEYS``."""


@dataclass(frozen=True, slots=True)
class Counts:
    """Tasks of one group (a priority, a task type or a tenant) since the start."""

    received: int = 0
    started: int = 0
    """First starts: the tasks whose queue time is counted."""
    queue_ms_total: int = 0
    """Sum of those queue times (exact: a mean over any interval is a difference of two)."""
    completed: int = 0
    """Finish reports with status SUCCEEDED."""
    dead_lettered: int = 0

    @property
    def mean_queue_ms(self) -> float | None:
        return self.queue_ms_total / self.started if self.started else None


_Key = TypeVar("_Key", bound=Hashable)


class _Breakdown(Generic[_Key]):
    """Counts per key: ``fields`` integers a key (no object per event), for at most ``limit``
    keys of their own, and every later key under ``other``."""

    __slots__ = ("_counts", "_fields", "_limit", "_other")

    def __init__(self, limit: int, other: _Key, fields: int = 5) -> None:
        self._limit = limit
        self._other: _Key = other
        self._fields = fields
        self._counts: dict[_Key, list[int]] = {}

    def add(self, key: _Key, field_index: int, amount: int = 1) -> _Key:
        """Count ``amount`` in field ``field_index`` of ``key``; the key counted under (``key``,
        or ``other`` once the limit is reached)."""
        counts = self._counts.get(key)
        if counts is None:
            if len(self._counts) >= self._limit:
                key = self._other
                counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * self._fields
        counts[field_index] += amount
        return key

    def items(self) -> ItemsView[_Key, list[int]]:
        return self._counts.items()

    def snapshot(self) -> dict[_Key, Counts]:
        return {key: Counts(*counts) for key, counts in self._counts.items()}


Need = tuple[frozenset[str], str | None]
"""What a task needs of an agent: its required skills and its preferred zone (None: any)."""
ANY_NEED: Need = (frozenset(), None)
"""The need of a task that asks for no skill and no zone: every agent can run it."""
OTHER_NEED: Need = (frozenset({OTHER}), None)
_DEMAND_RECEIVED, _DEMAND_WAITING = range(2)
"""The fields of a need's demand counts (``Demand``)."""
"""The need every need past the first ``BREAKDOWN_KEYS`` is counted under."""


@dataclass(frozen=True, slots=True)
class Demand:
    """Tasks of one need since the start (``received``) and waiting now (``waiting``)."""

    received: int = 0
    waiting: int = 0
    """Received and not started nor ended yet (dispatched ones not started included)."""


def need_of(job: Job) -> Need:
    """The need of ``job``: its required skills and preferred zone."""
    return (job.required_skills, job.zone)


_RECEIVED, _STARTED, _QUEUE_MS, _COMPLETED, _DEAD = range(5)
"""Indexes of the ``Counts`` fields in a ``_Breakdown``'s lists."""


@dataclass(slots=True)
class _Agent:
    """Slot-time of one agent, integrated up to ``since_ms``: available and busy."""

    capacity: int
    since_ms: int
    held: set[str] = field(default_factory=set)
    """Ids of the tasks dispatched to it and not finished (facts, not a counter)."""
    available_slot_ms: int = 0
    busy_slot_ms: int = 0

    def slot_ms_at(self, now_ms: int) -> tuple[int, int]:
        """(available, busy) slot-ms up to ``now_ms``; an event from the past adds nothing."""
        elapsed_ms = max(0, now_ms - self.since_ms)
        return (
            self.available_slot_ms + self.capacity * elapsed_ms,
            self.busy_slot_ms + min(len(self.held), self.capacity) * elapsed_ms,
        )

    def advance(self, now_ms: int) -> None:
        self.available_slot_ms, self.busy_slot_ms = self.slot_ms_at(now_ms)
        self.since_ms = max(self.since_ms, now_ms)


@dataclass(frozen=True, slots=True)
class QueueTimes:
    """Queue time (submitted -> first start) of the tasks of one priority level."""

    count: int
    mean_ms: float | None
    p99_ms: int | None


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures of a run at ``at_ms``; ``to_dict`` gives them JSON-ready."""

    at_ms: int
    tasks: int
    """Tasks received."""
    dispatched: int
    completed: int
    """Finished with status SUCCEEDED."""
    finished: Mapping[str, int]
    """Finish reports by status."""
    dead_lettered: Mapping[str, int]
    """By ``DeadLetterReason`` value (every reason present)."""
    mean_queue_ms: float | None
    p50_queue_ms: int | None
    p99_queue_ms: int | None
    queue_by_priority: Mapping[int, QueueTimes]
    mean_dispatch_ms: float | None
    p50_dispatch_ms: int | None
    p99_dispatch_ms: int | None
    utilization: float
    agent_utilization: Mapping[str, float]
    """Of every agent that had capacity at some time, by agent id."""
    load_cv: float
    """Population std / mean of ``agent_utilization``; 0 when the mean is 0."""
    max_load_ratio: float
    """Max over mean of ``agent_utilization``; 0 when the mean is 0."""
    deadline_success: float | None
    deadline_met: int
    deadline_missed: int
    priority_inversions: int
    affinity_hit_rate: float | None
    """Hits over keyed dispatches; ``None`` when no dispatch was keyed."""
    affinity_dispatches: int
    by_priority: Mapping[int, Counts] = field(default_factory=dict)
    """Every priority level, also those with nothing counted yet."""
    by_type: Mapping[str, Counts] = field(default_factory=dict)
    """The task types seen (at most ``BREAKDOWN_KEYS`` and ``OTHER``)."""
    by_tenant: Mapping[str, Counts] = field(default_factory=dict)
    """The tenants seen (at most ``BREAKDOWN_KEYS`` and ``OTHER``)."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ms rounded to 0.1, ratios to 1e-4, keys in a fixed order."""
        return {
            "at_ms": self.at_ms,
            "tasks": self.tasks,
            "dispatched": self.dispatched,
            "completed": self.completed,
            "finished": dict(sorted(self.finished.items())),
            "dead_lettered": dict(self.dead_lettered),
            "queue_ms": _times(self.mean_queue_ms, self.p50_queue_ms, self.p99_queue_ms),
            "queue_ms_by_priority": {
                f"p{level}": {"count": q.count, "mean": _ms(q.mean_ms), "p99": q.p99_ms}
                for level, q in sorted(self.queue_by_priority.items())
            },
            "dispatch_ms": _times(
                self.mean_dispatch_ms, self.p50_dispatch_ms, self.p99_dispatch_ms
            ),
            "utilization": _ratio(self.utilization),
            "agent_utilization": {
                agent_id: _ratio(u) for agent_id, u in sorted(self.agent_utilization.items())
            },
            "load_cv": _ratio(self.load_cv),
            "max_load_ratio": _ratio(self.max_load_ratio),
            "deadline_success": _ratio(self.deadline_success),
            "deadline_met": self.deadline_met,
            "deadline_missed": self.deadline_missed,
            "priority_inversions": self.priority_inversions,
            "affinity_hit_rate": _ratio(self.affinity_hit_rate),
            "affinity_dispatches": self.affinity_dispatches,
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _times(mean: float | None, p50: int | None, p99: int | None) -> dict[str, object]:
    return {"mean": _ms(mean), "p50": p50, "p99": p99}


def _balance(utilizations: Sequence[float]) -> tuple[float, float]:
    """(coefficient of variation, max over mean) of per-agent utilizations; exact for ties."""
    mean = statistics.mean(utilizations) if utilizations else 0.0
    if mean == 0:
        return (0.0, 0.0)
    return (statistics.pstdev(utilizations) / mean, max(utilizations) / mean)


class Statistics:
    """Accumulates the events of a run; ``summary`` turns them into figures."""

    def __init__(self, levels: int = 4) -> None:
        if levels < 1:
            raise ConfigError(f"levels must be >= 1, got {levels}")
        self._levels = levels
        self._received = 0
        self._dispatched = 0
        self._finished: dict[str, int] = {}
        self._dead = {reason: 0 for reason in DeadLetterReason}
        self.cancelled = 0
        """Tasks cancelled before they ran (a run stopped counts as its result's status)."""
        self.preempted = 0
        """Runs stopped to free their slot for a more urgent task (their task queued again)."""
        self.preempted_run_ms = 0
        """The run time those runs had had when they stopped: the work preemption lost."""
        self._queue = Series()
        self._queue_by_priority = [Series() for _ in range(levels)]
        self._dispatch = Series()
        self._pending: dict[str, int | None] = {}
        """Task id -> deadline of the tasks received and not started yet (no object per task:
        a dispatcher may hold 100,000s of them)."""
        self._pending_dispatched: set[str] = set()
        """Those of ``_pending`` dispatched at least once (their dispatch latency is counted)."""
        self._open: dict[str, str] = {}
        """Task id -> agent id of the dispatches not closed yet."""
        self._agents: dict[str, _Agent] = {}
        self._deadline_met = 0
        self._deadline_missed = 0
        self._inversions = 0
        self._keyed = 0
        self._hits = 0
        self._by_priority = _Breakdown(levels, levels - 1)
        for level in range(levels):  # every level shows, counted or not
            self._by_priority.add(level, _RECEIVED, 0)
        self._by_type = _Breakdown(BREAKDOWN_KEYS, OTHER)
        self._by_tenant = _Breakdown(BREAKDOWN_KEYS, OTHER)
        self._demand: _Breakdown[Need] = _Breakdown(BREAKDOWN_KEYS, OTHER_NEED, fields=2)
        """Need -> [received, waiting]: at most ``BREAKDOWN_KEYS`` needs and ``OTHER_NEED``."""
        self._pending_need: dict[str, Need] = {}
        """Need of the waiting tasks that need something (most need nothing: no entry)."""

    def agent_capacity(self, agent_id: str, capacity: int, now_ms: int) -> None:
        """The agent joined or changed capacity at ``now_ms``; 0 when it is down or left."""
        if capacity < 0:
            raise CoreError(f"capacity must be >= 0, got {capacity}")
        agent = self._agent(agent_id, now_ms)
        agent.advance(now_ms)
        agent.capacity = capacity

    def task_received(self, job: Job, now_ms: int) -> None:
        """A task entered the system (a duplicate of one still waiting is not counted).

        Queue time and dispatch latency are measured from ``job.submitted_ms``, not ``now_ms``.
        """
        if not 0 <= job.priority < self._levels:
            raise CoreError(f"priority {job.priority} outside 0..{self._levels - 1}")
        if job.task_id in self._pending:
            return
        self._pending[job.task_id] = job.deadline_ms
        self._received += 1
        self._count(job, _RECEIVED)
        need = self._demand.add(need_of(job), _DEMAND_RECEIVED)
        self._demand.add(need, _DEMAND_WAITING)
        if need != ANY_NEED:
            self._pending_need[job.task_id] = need

    def task_dispatched(
        self,
        job: Job,
        agent_id: str,
        now_ms: int,
        *,
        inversion: bool = False,
        affinity_hit: bool | None = None,
    ) -> None:
        """The task went to ``agent_id``; ``affinity_hit`` is ``None`` for a task without key."""
        self._dispatched += 1
        self._inversions += int(inversion)
        if affinity_hit is not None:
            self._keyed += 1
            self._hits += int(affinity_hit)
        task_id = job.task_id
        if task_id in self._pending and task_id not in self._pending_dispatched:
            self._pending_dispatched.add(task_id)
            self._dispatch.add(max(0, now_ms - job.submitted_ms))
        self._close(job.task_id, now_ms)
        agent = self._agent(agent_id, now_ms)
        agent.advance(now_ms)
        agent.held.add(job.task_id)
        self._open[job.task_id] = agent_id

    def task_started(self, job: Job, agent_id: str, now_ms: int) -> None:
        """The agent started the task: its first start gives its queue time and deadline."""
        if job.task_id not in self._pending:
            return
        del self._pending[job.task_id]
        self._pending_dispatched.discard(job.task_id)
        self._unwait(job.task_id)
        queue_ms = max(0, now_ms - job.submitted_ms)
        self._queue.add(queue_ms)
        self._queue_by_priority[job.priority].add(queue_ms)
        self._count(job, _STARTED)
        self._count(job, _QUEUE_MS, queue_ms)
        if job.deadline_ms is None:
            return
        if now_ms <= job.deadline_ms:
            self._deadline_met += 1
        else:
            self._deadline_missed += 1

    def task_finished(self, job: Job, agent_id: str, now_ms: int, status: str) -> None:
        """The attempt on ``agent_id`` ended with ``status``; its slot is free again."""
        self._finished[status] = self._finished.get(status, 0) + 1
        if status == SUCCEEDED:
            self._count(job, _COMPLETED)
        if self._open.get(job.task_id) == agent_id:
            self._close(job.task_id, now_ms)

    def task_dead_lettered(self, job: Job, reason: DeadLetterReason, now_ms: int) -> None:
        """The task ended in the dead letters; unstarted with a deadline, it missed it."""
        self._dead[reason] += 1
        self._count(job, _DEAD)
        self._close(job.task_id, now_ms)
        if job.task_id in self._pending:
            deadline_ms = self._pending.pop(job.task_id)
            self._pending_dispatched.discard(job.task_id)
            self._unwait(job.task_id)
            if deadline_ms is not None:
                self._deadline_missed += 1

    def task_withdrawn(self, task_id: str, now_ms: int) -> None:
        """The task went to another driver (its shard moved): it is neither waiting nor running
        here any more, and its deadline is the other driver's to meet."""
        if task_id in self._pending:
            del self._pending[task_id]
            self._unwait(task_id)
        self._pending_dispatched.discard(task_id)
        self._close(task_id, now_ms)

    def task_preempted(self, run_ms: int) -> None:
        """A run was stopped after ``run_ms`` for a more urgent task; its task waits again
        (its first start still gives its queue time)."""
        self.preempted += 1
        self.preempted_run_ms += max(0, run_ms)

    def task_cancelled(self, task_id: str, now_ms: int) -> None:
        """The task was cancelled before it ran: it waits no more, and no deadline of its is
        missed or met."""
        self.cancelled += 1
        self.task_withdrawn(task_id, now_ms)

    def intake_dead_lettered(self, reason: DeadLetterReason = DeadLetterReason.MALFORMED) -> None:
        """A record refused at the intake went to the dead letters (MALFORMED: no valid task;
        TOO_LARGE: over a size limit): no task was received, so only the dead letters count
        it."""
        self._dead[reason] += 1

    def demand(self) -> dict[Need, Demand]:
        """Tasks by need: received since the start and waiting now (cheap: no summary)."""
        return {need: Demand(*counts) for need, counts in self._demand.items()}

    def _unwait(self, task_id: str) -> None:
        """A waiting task started or ended: one fewer waits for its need."""
        self._demand.add(self._pending_need.pop(task_id, ANY_NEED), _DEMAND_WAITING, -1)

    def summary(self, now_ms: int) -> Summary:
        """The figures at ``now_ms`` (open intervals are counted up to it)."""
        utilization, per_agent = self._utilization(now_ms)
        load_cv, max_load_ratio = _balance(list(per_agent.values()))
        missed = self._deadline_missed + self._overdue(now_ms)
        decided = self._deadline_met + missed
        return Summary(
            at_ms=now_ms,
            tasks=self._received,
            dispatched=self._dispatched,
            completed=self._finished.get(SUCCEEDED, 0),
            finished=dict(self._finished),
            dead_lettered={reason.value: count for reason, count in self._dead.items()},
            mean_queue_ms=self._queue.mean(),
            p50_queue_ms=self._queue.quantile(50),
            p99_queue_ms=self._queue.quantile(99),
            queue_by_priority={
                level: QueueTimes(len(series), series.mean(), series.quantile(99))
                for level, series in enumerate(self._queue_by_priority)
            },
            mean_dispatch_ms=self._dispatch.mean(),
            p50_dispatch_ms=self._dispatch.quantile(50),
            p99_dispatch_ms=self._dispatch.quantile(99),
            utilization=utilization,
            agent_utilization=per_agent,
            load_cv=load_cv,
            max_load_ratio=max_load_ratio,
            deadline_success=self._deadline_met / decided if decided else None,
            deadline_met=self._deadline_met,
            deadline_missed=missed,
            priority_inversions=self._inversions,
            affinity_hit_rate=self._hits / self._keyed if self._keyed else None,
            affinity_dispatches=self._keyed,
            by_priority=self._by_priority.snapshot(),
            by_type=self._by_type.snapshot(),
            by_tenant=self._by_tenant.snapshot(),
        )

    def _count(self, job: Job, field_index: int, amount: int = 1) -> None:
        """Add to the breakdowns of the task's priority, type and tenant."""
        if 0 <= job.priority < self._levels:
            self._by_priority.add(job.priority, field_index, amount)
        self._by_type.add(job.task_type, field_index, amount)
        self._by_tenant.add(job.tenant, field_index, amount)

    def _agent(self, agent_id: str, now_ms: int) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent(0, now_ms)
        return agent

    def _close(self, task_id: str, now_ms: int) -> None:
        """End the task's open dispatch, if any: its slot is free from ``now_ms``."""
        agent_id = self._open.pop(task_id, None)
        if agent_id is not None:
            agent = self._agents[agent_id]
            agent.advance(now_ms)
            agent.held.discard(task_id)

    def _overdue(self, now_ms: int) -> int:
        """Tasks still waiting to start whose deadline has passed: already misses."""
        return sum(
            1
            for deadline_ms in self._pending.values()
            if deadline_ms is not None and deadline_ms < now_ms
        )

    def _utilization(self, now_ms: int) -> tuple[float, dict[str, float]]:
        """Overall and per-agent busy over available slot-time, up to ``now_ms``."""
        slot_ms = {agent_id: agent.slot_ms_at(now_ms) for agent_id, agent in self._agents.items()}
        up = sorted(agent_id for agent_id, (available, _) in slot_ms.items() if available > 0)
        per_agent = {agent_id: slot_ms[agent_id][1] / slot_ms[agent_id][0] for agent_id in up}
        total_available = sum(slot_ms[agent_id][0] for agent_id in up)
        total_busy = sum(slot_ms[agent_id][1] for agent_id in up)
        overall = total_busy / total_available if total_available else 0.0
        return (overall, per_agent)
