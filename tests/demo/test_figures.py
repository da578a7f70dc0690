"""The demo's figures from hand-made records (pure: no broker)."""

from __future__ import annotations

import dataclasses
import json

from streams.core.model import DeadLetterReason
from streams.wire import Assignment, DeadLetter, Task, TaskResult, TaskStatus
from taskd_lab.demo.figures import RunRecords, compute, mean_wait_all, priority_inversions

T0 = 1_000_000


def _task(task_id: str, priority: int, at: int, deadline: int | None = None) -> Task:
    return Task(
        task_id=task_id,
        type="work",
        priority=priority,
        payload=b"{}",
        submitted_at=T0 + at,
        deadline=None if deadline is None else T0 + deadline,
    )


def _assign(task: Task, agent: str, at: int) -> Assignment:
    return Assignment(
        task=task,
        agent_id=agent,
        epoch=1,
        dispatched_at=T0 + at,
        lease_ms=60_000,
        dispatcher_shard=0,
        reply_partition=0,
    )


def _result(task: Task, agent: str, start: int, end: int, status: TaskStatus) -> TaskResult:
    return TaskResult(
        task_id=task.task_id,
        agent_id=agent,
        attempt=0,
        status=status,
        started_at=T0 + start,
        finished_at=T0 + end,
    )


def _records() -> RunRecords:
    a = _task("a", 0, 0, deadline=50)  # starts at 10: meets its deadline
    b = _task("b", 2, 0)
    c = _task("c", 1, 100, deadline=150)  # starts at 400: misses it
    d = _task("d", 3, 100)  # dead-lettered FAILED
    return RunRecords(
        tasks={task.task_id: task for task in (a, b, c, d)},
        assignments=[
            _assign(a, "x", 5),
            _assign(b, "y", 5),
            _assign(c, "x", 300),
            _assign(d, "y", 200),
        ],
        results=[
            _result(a, "x", 10, 510, TaskStatus.SUCCEEDED),
            _result(b, "y", 10, 1010, TaskStatus.SUCCEEDED),
            _result(c, "x", 400, 900, TaskStatus.SUCCEEDED),
            _result(d, "y", 1010, 1100, TaskStatus.FAILED),
        ],
        dead_letters=[
            DeadLetter(
                task=d, reason=DeadLetterReason.FAILED, error="x", attempts=1, dead_at=T0 + 1110
            )
        ],
        capacities={"x": 1, "y": 2},
        start_ms=T0,
        end_ms=T0 + 2000,
    )


def test_outcomes_queue_times_and_deadlines() -> None:
    figures = compute(_records(), bins=4)
    assert figures["tasks"] == 4
    assert figures["completed"] == 3
    assert figures["dead_lettered"] == 1
    assert figures["dead_by_reason"] == {"FAILED": 1}
    assert figures["unsettled"] == 0
    assert figures["completion"] == 0.75
    # queue times: a 10, b 10, c 300, d 910 -> mean 307.5
    assert figures["queue_ms"] == {"mean": 307.5, "p50": 10, "p99": 910}
    by_level = figures["queue_ms_by_priority"]
    assert isinstance(by_level, dict)
    assert by_level["p1"] == {"count": 1, "mean": 300.0, "p99": 300}
    assert figures["deadline_success"] == 0.5
    json.dumps(figures)  # JSON-ready


def test_utilization_and_load_over_time() -> None:
    figures = compute(_records(), bins=4)
    # a slot is busy from dispatch to result, never more than the capacity: x (1 slot) holds
    # a 5..510 and c 300..900, so is busy 5..900; y (2 slots) holds b 5..1010 and d 200..1100
    utilization = figures["agent_utilization"]
    assert utilization == {"x": round(895 / 2000, 4), "y": round(1905 / 4000, 4)}
    assert figures["utilization"] == round((895 + 1905) / 6000, 4)
    load = figures["load_over_time"]
    assert isinstance(load, dict)
    assert load["step_ms"] == 500.0
    # x runs 10..510 and 400..900: bin 0 has 490 + 100 ms of 500
    assert load["agents"]["x"][0] == round(590 / 500, 4)


def test_a_killed_agent_has_no_capacity_after_its_death() -> None:
    records = _records()
    killed = RunRecords(**{**_fields(records), "killed": {"x": T0 + 1000}})
    utilization = compute(killed)["agent_utilization"]
    assert isinstance(utilization, dict)
    assert utilization["x"] == round(895 / 1000, 4)  # busy over the 1000 ms it was up


def _inversions(
    urgent_id: str, lazy_id: str, urgent_start: int, lazy_start: int, **grace: int
) -> int:
    """A p0 and a p3 task both dispatched to agent x at 0, started at the times given."""
    urgent, lazy = _task(urgent_id, 0, 0), _task(lazy_id, 3, 0)
    assignments = [_assign(lazy, "x", 0), _assign(urgent, "x", 0)]
    results = [
        _result(urgent, "x", urgent_start, urgent_start + 100, TaskStatus.SUCCEEDED),
        _result(lazy, "x", lazy_start, lazy_start + 100, TaskStatus.SUCCEEDED),
    ]
    return priority_inversions(assignments, results, **grace)


def test_a_more_urgent_task_waiting_at_the_agent_is_an_inversion() -> None:
    assert _inversions("u", "l", urgent_start=1, lazy_start=5) == 0
    assert _inversions("u", "l", urgent_start=200, lazy_start=1, grace_ms=0) == 1
    # within the grace period a reordering is not counted
    assert _inversions("u", "l", urgent_start=200, lazy_start=1, grace_ms=50) == 0


def test_starts_in_the_same_millisecond_are_not_an_inversion() -> None:
    """The agent starts what it holds most urgent first in one pass: when both start in the
    same millisecond their order is not on the record, whatever their ids."""
    assert _inversions("z-urgent", "a-lazy", urgent_start=120, lazy_start=120) == 0
    assert _inversions("z-urgent", "a-lazy", urgent_start=121, lazy_start=120) == 1


def _fields(records: RunRecords) -> dict[str, object]:
    return {name: getattr(records, name) for name in RunRecords.__slots__}


def test_the_wait_of_every_task_counts_unstarted_ones_to_their_end() -> None:
    records = _records()
    late = Task.new(type="t", priority=3, now_ms=T0 + 1500)
    never = Task.new(type="t", priority=3, now_ms=T0 + 1800)
    tasks = {**records.tasks, late.task_id: late, never.task_id: never}
    letter = DeadLetter(
        task=late, reason=DeadLetterReason.EXPIRED, error="x", attempts=0, dead_at=T0 + 1700
    )
    with_waiting = dataclasses.replace(
        records, tasks=tasks, dead_letters=[*records.dead_letters, letter]
    )
    # started: 10, 10, 300, 910; expired unstarted after 200; still waiting at the end after 200
    assert mean_wait_all(with_waiting) == (10 + 10 + 300 + 910 + 200 + 200) / 6
    assert mean_wait_all(dataclasses.replace(records, tasks={})) is None
