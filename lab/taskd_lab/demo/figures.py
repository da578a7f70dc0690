"""The figures of one run, from its records alone (pure: no clock, no I/O).

Definitions (the reference's terms, measured on the records the pipeline wrote):

- *queue time*: ``result.started_at - task.submitted_at`` of a task's first start;
- *utilization*: busy slot-time over available slot-time (capacity x time the agent was up),
  from the first submission to the end of the run; an agent is busy in a slot from the dispatch
  of a task to its result (``streams.core.stats.Statistics`` integrates it);
- *load variance*: the coefficient of variation of the agents' utilizations;
- *deadline success*: tasks with a deadline that started by it, over those with a deadline;
- *completion*: tasks that SUCCEEDED over tasks submitted;
- *wait of every task*: the queue time of tasks that started, and for those that never did
  the time until they were dead-lettered or the run ended (so a lower bound): the fair base
  for comparing two runs when one leaves work unstarted;
- *priority inversions*: starts of a task at an agent while a more urgent one had already been
  waiting there for ``GRACE_MS`` (what pushing work to an agent's own queue costs; with late
  binding an agent's queue is empty, so there are none). ``started_at`` is whole milliseconds:
  starts in the same millisecond are taken most urgent first, as the agent takes them from its
  heap in one pass (their order within the millisecond is not on the record);
- *load per agent over time*: the share of its slots running a task (started to finished), in
  ``bins`` equal steps of the run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from streams.core.model import DeadLetterReason, Job
from streams.core.stats import Statistics
from streams.wire import Assignment, DeadLetter, Task, TaskResult, TaskStatus, task_to_job

GRACE_MS = 50
"""A more urgent task counts as waiting behind another once it has been at the agent this long:
an agent starts a fetched batch in its partition's order, and a few ms of reordering is not
what pushing costs."""


@dataclass(frozen=True, slots=True)
class RunRecords:
    """Everything one run left: the tasks as submitted and what the topics hold about them."""

    tasks: Mapping[str, Task]
    assignments: Sequence[Assignment]
    results: Sequence[TaskResult]
    dead_letters: Sequence[DeadLetter]
    capacities: Mapping[str, int]
    """Each agent's slots (all up from ``start_ms``)."""
    start_ms: int
    end_ms: int
    killed: Mapping[str, int] = field(default_factory=dict)
    """Agent id -> when it was killed (ms since the epoch)."""


def compute(records: RunRecords, *, levels: int = 4, bins: int = 60) -> dict[str, object]:
    """The run's figures as a JSON-ready dict (see the module docstring)."""
    stats = _replay(records, levels)
    summary = stats.summary(records.end_ms)
    outcome = _outcomes(records)
    submitted = len(records.tasks)
    figures: dict[str, object] = {
        "tasks": submitted,
        "completed": outcome.completed,
        "dead_lettered": outcome.dead,
        "dead_by_reason": outcome.reasons,
        "unsettled": submitted - outcome.completed - outcome.dead,
        "completion": _ratio(outcome.completed, submitted),
        "wall_ms": records.end_ms - records.start_ms,
        "distributed": len(records.assignments),
        "results_by_status": dict(sorted(Counter(r.status.value for r in records.results).items())),
        "inversions": priority_inversions(records.assignments, records.results),
        "load_over_time": load_over_time(records, bins),
    }
    stats_view = summary.to_dict()
    for key in ("queue_ms", "queue_ms_by_priority", "utilization", "agent_utilization"):
        figures[key] = stats_view[key]
    figures["load_cv"] = stats_view["load_cv"]
    figures["deadline_success"] = stats_view["deadline_success"]
    figures["deadline_met"] = summary.deadline_met
    figures["deadline_missed"] = summary.deadline_missed
    figures["started"] = sum(q.count for q in summary.queue_by_priority.values())
    figures["mean_wait_all_ms"] = mean_wait_all(records)
    return figures


def mean_wait_all(records: RunRecords) -> float | None:
    """The mean wait of every submitted task (see *wait of every task* above)."""
    ended_at: dict[str, int] = {}
    for result in records.results:
        if result.status is not TaskStatus.REJECTED:
            first = ended_at.get(result.task_id, result.started_at)
            ended_at[result.task_id] = min(first, result.started_at)
    for letter in records.dead_letters:
        if letter.task is not None:
            ended_at.setdefault(letter.task.task_id, letter.dead_at)
    waits = [
        max(0, ended_at.get(task_id, records.end_ms) - task.submitted_at)
        for task_id, task in records.tasks.items()
    ]
    return sum(waits) / len(waits) if waits else None


def _replay(records: RunRecords, levels: int) -> Statistics:
    """Feed every record to a Statistics in time order (it integrates slot-time as it goes)."""
    stats = Statistics(levels)
    for _, _, apply in sorted(_events(records, stats), key=lambda event: event[:2]):
        apply()
    return stats


Event = tuple[int, int, Callable[[], None]]
"""(time, order within the same ms, the call that applies it)."""


def _events(records: RunRecords, stats: Statistics) -> Iterator[Event]:
    """Every fact of the run as a Statistics call."""
    for agent_id, capacity in records.capacities.items():
        yield (
            records.start_ms,
            0,
            partial(stats.agent_capacity, agent_id, capacity, records.start_ms),
        )
    for agent_id, at_ms in records.killed.items():
        yield at_ms, 0, partial(stats.agent_capacity, agent_id, 0, at_ms)
    jobs = {task_id: task_to_job(task) for task_id, task in records.tasks.items()}
    for each in jobs.values():
        yield each.submitted_ms, 1, partial(stats.task_received, each, each.submitted_ms)
    for assignment in records.assignments:
        if (job := jobs.get(assignment.task.task_id)) is not None:
            at = assignment.dispatched_at
            yield at, 2, partial(stats.task_dispatched, job, assignment.agent_id, at)
    for result in records.results:
        if (job := jobs.get(result.task_id)) is not None:
            yield from _result_events(stats, job, result)
    for letter in records.dead_letters:
        task_id = None if letter.task is None else letter.task.task_id
        if task_id is not None and (job := jobs.get(task_id)) is not None:
            yield (
                letter.dead_at,
                5,
                partial(stats.task_dead_lettered, job, letter.reason, letter.dead_at),
            )


def _result_events(stats: Statistics, job: Job, result: TaskResult) -> Iterator[Event]:
    """A result is a start (unless the agent refused the task) and a finish."""
    if result.status is not TaskStatus.REJECTED:
        yield (
            result.started_at,
            3,
            partial(stats.task_started, job, result.agent_id, result.started_at),
        )
    status, at = result.status.value, result.finished_at
    yield at, 4, partial(stats.task_finished, job, result.agent_id, at, status)


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Each task counted once: SUCCEEDED if any attempt did, else dead if dead-lettered."""

    completed: int
    dead: int
    reasons: dict[str, int]


def _outcomes(records: RunRecords) -> Outcomes:
    succeeded = {r.task_id for r in records.results if r.status is TaskStatus.SUCCEEDED}
    succeeded &= set(records.tasks)
    reasons: dict[str, DeadLetterReason] = {}
    for letter in records.dead_letters:
        if letter.task is not None and letter.task.task_id in records.tasks:
            reasons.setdefault(letter.task.task_id, letter.reason)
    dead = [reason.value for task_id, reason in reasons.items() if task_id not in succeeded]
    return Outcomes(len(succeeded), len(dead), dict(sorted(Counter(dead).items())))


def priority_inversions(
    assignments: Sequence[Assignment], results: Sequence[TaskResult], grace_ms: int = GRACE_MS
) -> int:
    """Starts at an agent while a more urgent task had waited there at least ``grace_ms``."""
    priority = {a.task.task_id: a.task.priority for a in assignments}
    events: dict[str, list[tuple[int, int, str, int]]] = defaultdict(list)
    for a in assignments:
        key = f"{a.task.task_id}#{a.task.attempt}"
        events[a.agent_id].append((a.dispatched_at + grace_ms, 0, key, a.task.priority))
    for r in results:
        if r.status is not TaskStatus.REJECTED and r.task_id in priority:
            key = f"{r.task_id}#{r.attempt}"
            events[r.agent_id].append((r.started_at, 1, key, priority[r.task_id]))
    return sum(
        _agent_inversions(sorted(agent_events, key=_in_time_then_urgency))
        for agent_events in events.values()
    )


def _in_time_then_urgency(event: tuple[int, int, str, int]) -> tuple[int, int, int, str]:
    """Time, arrivals before starts, then the most urgent level first (ties within one
    millisecond: the order an agent starts them in one pass)."""
    at, kind, key, level = event
    return at, kind, level, key


def _agent_inversions(events: Sequence[tuple[int, int, str, int]]) -> int:
    waiting: dict[str, int] = {}
    started: set[str] = set()
    by_level: Counter[int] = Counter()
    inversions = 0
    for _, kind, key, level in events:
        if kind == 0:
            if key not in started:
                waiting[key] = level
                by_level[level] += 1
            continue
        started.add(key)
        if key in waiting:
            by_level[waiting.pop(key)] -= 1
        inversions += any(by_level[more] > 0 for more in range(level))
    return inversions


def load_over_time(records: RunRecords, bins: int) -> dict[str, object]:
    """Share of each agent's slots running a task, in ``bins`` steps of the run."""
    span_ms = max(1, records.end_ms - records.start_ms)
    step_ms = span_ms / bins
    busy: dict[str, list[float]] = {agent: [0.0] * bins for agent in records.capacities}
    for result in records.results:
        row = busy.get(result.agent_id)
        if row is not None:
            _spread(
                row,
                result.started_at - records.start_ms,
                result.finished_at - records.start_ms,
                step_ms,
            )
    return {
        "step_ms": round(step_ms, 1),
        "agents": {
            agent: [round(value / (records.capacities[agent] * step_ms), 4) for value in row]
            for agent, row in busy.items()
        },
    }


def _spread(row: list[float], begin_ms: float, end_ms: float, step_ms: float) -> None:
    """Add the interval's overlap with each bin of ``row`` (ms)."""
    begin_ms, end_ms = max(0.0, begin_ms), min(len(row) * step_ms, end_ms)
    index = int(begin_ms // step_ms)
    while begin_ms < end_ms and index < len(row):
        upper = min(end_ms, (index + 1) * step_ms)
        row[index] += upper - begin_ms
        begin_ms, index = upper, index + 1


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
