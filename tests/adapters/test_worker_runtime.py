"""An agent in-process against the real broker: results, statuses, epochs, repeats, capacity,
offsets, batches, heartbeats and fencing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streams.adapters.worker import runner as runner_module
from streams.adapters.worker.dispatch import commit_group
from streams.settings import Settings
from streams.wire import (
    GROUPED_HEADER,
    AgentHeartbeat,
    AgentRegistration,
    AgentStatus,
    Assignment,
    RegistrationStatus,
    Task,
    TaskResult,
    TaskStatus,
)
from streams.worker import Agent, AgentError, FatalError, RetryableError, batch
from tests.adapters.test_worker_support import (
    WAIT_S,
    assignment,
    committed,
    config,
    dispatch,
    on_any_port,
    produce,
    read,
    read_results,
    running,
    sample,
    until,
)

COMPLETED = "taskd_agent_results_total"


def _completed(agent: Agent) -> float:
    return sum(sample(agent, COMPLETED, status=status.value) for status in TaskStatus)


def _results(settings: Settings, count: int) -> dict[str, tuple[int, TaskResult]]:
    found = read_results(settings, count)
    assert len(found) == count, f"{len(found)} results, {count} expected: {found}"
    return {result.task_id: (partition, result) for partition, result in found}


def _old_owner(settings: Settings, epoch: int) -> None:
    """A previous owner of dispatch partition 0, so the next claim gets ``epoch + 1``."""
    gone = AgentRegistration(
        agent_id="old",
        partition=0,
        epoch=epoch,
        start_offset=0,
        status=RegistrationStatus.RELEASED,
        registered_at=0,
        renewed_at=0,
        capacity=1,
    )
    produce(settings, settings.topics.registry, [gone], key="old")


async def _fail_retryable(task: Task) -> None:
    raise RetryableError("the service is busy, try later")


def _fail_unexpectedly(task: Task) -> None:
    raise KeyError("missing")


async def _fail_fatally(task: Task) -> None:
    raise FatalError("the input can never work")


def _not_json(task: Task) -> object:
    return {1, 2}


HANDLERS: dict[str, Any] = {
    "bytes": lambda task: b"\x00raw",
    "text": lambda task: "héllo",
    "json": lambda task: {"echo": json.loads(task.payload)},
    "none": lambda task: None,
    "retry": _fail_retryable,
    "boom": _fail_unexpectedly,
    "fatal": _fail_fatally,
    "set": _not_json,
}
EXPECTED = {
    "bytes": (TaskStatus.SUCCEEDED, b"\x00raw", None),
    "text": (TaskStatus.SUCCEEDED, "héllo".encode(), None),
    "json": (TaskStatus.SUCCEEDED, b'{"echo":{"n":7}}', None),
    "none": (TaskStatus.SUCCEEDED, None, None),
    "retry": (TaskStatus.RETRYABLE, None, "the service is busy, try later"),
    "boom": (TaskStatus.RETRYABLE, None, "KeyError: 'missing'"),
    "fatal": (TaskStatus.FAILED, None, "the input can never work"),
    "unknown": (TaskStatus.REJECTED, None, "no handler for type unknown"),
}


def test_every_outcome_is_a_result_on_the_reply_partition(topics: Settings) -> None:
    settings = on_any_port(topics)
    agent = Agent(config(capacity=4, handlers=HANDLERS), settings)
    sent = [
        assignment(epoch=1, task_type=kind, payload=b'{"n": 7}', reply_partition=i % 2)
        for i, kind in enumerate(EXPECTED)
    ]

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, sent)
            await until(lambda: _completed(agent) == len(sent), "every result written")

    asyncio.run(scenario())
    results = _results(settings, len(sent))
    for item in sent:
        partition, result = results[item.task.task_id]
        expected = EXPECTED[item.task.type]
        assert (result.status, result.output, result.error) == expected, item.task.type
        assert partition == item.reply_partition
        assert (result.agent_id, result.attempt) == ("a1", 0)
        assert result.started_at <= result.finished_at
    assert sample(agent, "taskd_agent_tasks_started_total") == len(sent) - 1  # one REJECTED


def test_a_set_is_no_json_output_and_fails(topics: Settings) -> None:
    settings = on_any_port(topics)
    agent = Agent(config(handler=_not_json), settings)
    sent = assignment(epoch=1)

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, [sent])
            await until(lambda: _completed(agent) == 1, "the result written")

    asyncio.run(scenario())
    (_, result) = _results(settings, 1)[sent.task.task_id]
    assert result.status is TaskStatus.FAILED
    assert result.error is not None and "not JSON" in result.error


def test_stale_epochs_are_skipped_and_a_repeated_attempt_runs_once(topics: Settings) -> None:
    settings = on_any_port(topics)
    _old_owner(settings, epoch=1)
    calls: list[tuple[str, int]] = []

    async def record(task: Task) -> None:
        calls.append((task.task_id, task.attempt))

    agent = Agent(config(handler=record), settings)
    stale = assignment(epoch=1, task_id="stale")
    first = assignment(epoch=2, task_id="t")
    retry = assignment(epoch=2, task_id="t", attempt=1)

    async def scenario() -> None:
        async with running(agent) as started:
            assert started.ready is not None and started.ready.epoch == 2
            dispatch(settings, 0, [stale, first, first, retry, first])
            await until(lambda: _completed(agent) == 2, "two results written")
            await until(
                lambda: (
                    sample(
                        agent, "taskd_agent_assignments_skipped_total", reason="repeated_attempt"
                    )
                    == 2
                ),
                "the repeats skipped",
            )

    asyncio.run(scenario())
    assert calls == [("t", 0), ("t", 1)]
    assert sample(agent, "taskd_agent_assignments_skipped_total", reason="stale_epoch") == 1
    results = _results(settings, 2)
    assert "stale" not in results


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_never_more_than_capacity_run_and_prefetch_stays_bounded(
    topics: Settings, kind: str
) -> None:
    settings = on_any_port(topics)
    capacity, total = 3, 10
    lock = threading.Lock()
    running_now = [0, 0]  # now, peak
    release_async = asyncio.Event()
    release_sync = threading.Event()

    def enter() -> None:
        with lock:
            running_now[0] += 1
            running_now[1] = max(running_now[1], running_now[0])

    def leave() -> None:
        with lock:
            running_now[0] -= 1

    async def async_handler(task: Task) -> None:
        enter()
        await release_async.wait()
        leave()

    def sync_handler(task: Task) -> None:
        enter()
        assert release_sync.wait(WAIT_S), "never released"
        leave()

    handler = async_handler if kind == "async" else sync_handler
    agent = Agent(config(capacity=capacity, handler=handler), settings)

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, [assignment(epoch=1) for _ in range(total)])
            await until(
                lambda: (
                    sample(agent, "taskd_agent_prefetched") == capacity
                    and sample(agent, "taskd_agent_tasks_started_total") == capacity
                ),
                "the prefetch filled while every slot is busy",
            )
            assert sample(agent, "taskd_agent_tasks_started_total") == capacity
            assert sample(agent, "taskd_agent_in_flight") == capacity
            assert running_now[0] == capacity
            release_async.set()
            release_sync.set()
            await until(lambda: _completed(agent) == total, "every task completed")

    asyncio.run(scenario())
    assert running_now[1] == capacity
    assert sample(agent, "taskd_agent_capacity") == capacity


def test_offsets_are_committed_after_the_results_and_a_new_agent_does_not_rerun(
    topics: Settings,
) -> None:
    settings = on_any_port(topics)
    calls: list[str] = []

    async def record(task: Task) -> None:
        calls.append(task.task_id)

    sent = [assignment(epoch=1) for _ in range(3)]

    async def scenario() -> None:
        agent = Agent(config(handler=record), settings)
        async with running(agent):
            dispatch(settings, 0, sent)
            await until(lambda: _completed(agent) == 3, "three results written")
        assert committed(settings, commit_group(settings, 0), 0) == 3
        again = Agent(config(handler=record), settings)
        async with running(again) as restarted:
            assert restarted.ready is not None
            assert (restarted.ready.partition, restarted.ready.start_offset) == (0, 3)
            dispatch(settings, 0, [assignment(epoch=2, task_id="after")])
            await until(lambda: _completed(again) == 1, "the new task ran")

    asyncio.run(scenario())
    assert calls == [item.task.task_id for item in sent] + ["after"]


def test_a_batch_handler_gets_lists_and_its_outputs_become_results(topics: Settings) -> None:
    settings = on_any_port(topics)
    sizes: list[int] = []

    @batch(max_size=3, max_wait_ms=20)
    def handle(tasks: list[Task]) -> list[object]:
        sizes.append(len(tasks))
        return [
            FatalError("odd one out") if t.payload == b"bad" else t.payload.decode() for t in tasks
        ]

    agent = Agent(config(capacity=3, handler=handle), settings)
    sent = [assignment(epoch=1, payload=b"bad" if i == 4 else b"%d" % i) for i in range(7)]

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, sent)
            await until(lambda: _completed(agent) == len(sent), "every result written")

    asyncio.run(scenario())
    assert sum(sizes) == len(sent) and max(sizes) <= 3
    results = _results(settings, len(sent))
    for i, item in enumerate(sent):
        _, result = results[item.task.task_id]
        if i == 4:
            assert (result.status, result.error) == (TaskStatus.FAILED, "odd one out")
        else:
            assert (result.status, result.output) == (TaskStatus.SUCCEEDED, b"%d" % i)


def test_a_group_the_dispatcher_gathered_goes_to_the_batch_handler_without_waiting_again(
    topics: Settings,
) -> None:
    """A record marked ``GROUPED_HEADER`` for a type: the dispatcher waited for its tasks
    already, so the agent hands them to the batch handler at once, not after the handler's own
    wait (two minutes here: the test would run out first)."""
    settings = on_any_port(topics)
    calls: list[list[str]] = []

    @batch(max_size=16, max_wait_ms=120_000)
    def handle(tasks: list[Task]) -> list[object]:
        calls.append([t.task_id for t in tasks])
        return ["done"] * len(tasks)

    agent = Agent(config(capacity=8, handler=handle), settings)
    group = [assignment(epoch=1, task_type="embed") for _ in range(3)]
    grouped = [(GROUPED_HEADER, b"embed")]

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, group, together=True, headers=grouped)
            await until(lambda: _completed(agent) == len(group), "the group's results written")

    asyncio.run(scenario())
    assert calls == [[item.task.task_id for item in group]]


def test_heartbeats_say_ready_then_draining_then_stopping(topics: Settings) -> None:
    settings = on_any_port(topics)
    agent = Agent(
        config(
            handler=_fail_retryable,
            skills=("gpu", "ocr"),
            zone="eu",
            weight=2.5,
            cost_per_task=0.75,
        ),
        settings,
    )

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, [assignment(epoch=1)])
            await until(lambda: _completed(agent) == 1, "the result written")

    asyncio.run(scenario())
    beats = [hb for _, hb in read(settings, settings.topics.heartbeats, AgentHeartbeat, count=3)]
    beats.sort(key=lambda hb: hb.sent_at)
    statuses = [hb.status for hb in beats]
    assert statuses[0] is AgentStatus.READY
    assert statuses[-2:] == [AgentStatus.DRAINING, AgentStatus.STOPPING]
    last = beats[-1]
    assert (last.agent_id, last.capacity, last.skills, last.zone, last.weight) == (
        "a1",
        2,
        ("gpu", "ocr"),
        "eu",
        2.5,
    )
    assert last.cost_per_task == 0.75
    assert last.prefetch == 2  # the default read-ahead: its capacity
    assert (last.in_flight, last.completed) == (0, 1)
    registry = read(settings, settings.topics.registry, AgentRegistration, count=2)
    assert registry[-1][1].status is RegistrationStatus.RELEASED


def test_an_assignment_of_a_newer_epoch_fences_the_agent(topics: Settings) -> None:
    settings = on_any_port(topics)
    calls: list[str] = []

    async def record(task: Task) -> None:
        calls.append(task.task_id)

    agent = Agent(config(handler=record), settings)

    async def scenario() -> None:
        run = asyncio.get_running_loop().create_task(agent.run())
        await asyncio.wait_for(agent.wait_ready(), WAIT_S)
        dispatch(settings, 0, [assignment(epoch=1, task_id="mine"), assignment(epoch=2)])
        with pytest.raises(AgentError, match="newer owner"):
            await asyncio.wait_for(run, WAIT_S)

    asyncio.run(scenario())
    assert calls == ["mine"]
    assert committed(settings, commit_group(settings, 0), 0) == 1


def test_waiting_assignments_start_most_urgent_first(
    topics: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Priority, then deadline, then partition order: what the dispatcher sends beyond the
    slots waits at the agent, and a more urgent task must not wait behind a less urgent one."""
    monkeypatch.setattr(runner_module, "OVERTAKEN_S", 600.0)  # a slow machine changes nothing
    settings = on_any_port(topics)
    started, release, handler = _start_recorder()

    waiting = [
        urgent("p3", 3),
        urgent("p1-late", 1, deadline=1_790_000_900_000),
        urgent("p2", 2),
        urgent("p1-none", 1),
        urgent("p1-early", 1, deadline=1_790_000_100_000),
        urgent("p0", 0),
    ]
    agent = Agent(config(capacity=1, prefetch=len(waiting), handler=handler), settings)

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, [urgent("blocker", 3)])
            await until(lambda: started == ["blocker"], "the only slot taken")
            dispatch(settings, 0, waiting)
            await until(
                lambda: sample(agent, "taskd_agent_prefetched") == len(waiting),
                "every other assignment waiting",
            )
            release.set()
            await until(lambda: _completed(agent) == len(waiting) + 1, "every task completed")

    asyncio.run(scenario())
    assert started == ["blocker", "p0", "p1-early", "p1-late", "p1-none", "p2", "p3"]


def test_records_read_together_start_most_urgent_first(topics: Settings) -> None:
    """Two records fetched in one poll, one slot free: the later record's more urgent task
    takes it, not the earlier record's (every record of a poll is queued before any starts)."""
    settings = on_any_port(topics)
    started, release, handler = _start_recorder()
    agent = Agent(config(capacity=2, prefetch=1, handler=handler), settings)

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, [urgent("blocker", 3)])
            await until(lambda: started == ["blocker"], "one slot taken")
            dispatch(settings, 0, [urgent("p3", 3), urgent("p0", 0)])  # two records, one flush
            await until(lambda: len(started) == 3, "both run in the free slot, one by one")
            release.set()
            await until(lambda: _completed(agent) == 3, "every task completed")

    asyncio.run(scenario())
    assert started == ["blocker", "p0", "p3"]


def test_an_assignment_overtaken_for_too_long_starts_next(
    topics: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More urgent work keeps arriving: what has waited ``OVERTAKEN_S`` starts anyway."""
    monkeypatch.setattr(runner_module, "OVERTAKEN_S", 0.3)
    settings = on_any_port(topics)
    started, release, handler = _start_recorder()

    agent = Agent(config(capacity=1, prefetch=8, handler=handler), settings)

    async def scenario() -> None:
        async with running(agent):
            dispatch(settings, 0, [urgent("blocker", 0), urgent("old-p3", 3)])
            await until(lambda: sample(agent, "taskd_agent_prefetched") == 1, "old-p3 waits")
            await asyncio.sleep(0.5)  # past OVERTAKEN_S
            dispatch(settings, 0, [urgent(f"new-p0-{n}", 0) for n in range(3)])
            await until(lambda: sample(agent, "taskd_agent_prefetched") == 4, "all waiting")
            release.set()
            await until(lambda: _completed(agent) == 5, "every task completed")

    asyncio.run(scenario())
    assert started == ["blocker", "old-p3", "new-p0-0", "new-p0-1", "new-p0-2"]


def _start_recorder() -> tuple[list[str], asyncio.Event, Callable[[Task], Awaitable[None]]]:
    """A handler recording the order tasks start in; the task "blocker" runs until released."""
    started: list[str] = []
    release = asyncio.Event()

    async def handler(task: Task) -> None:
        started.append(task.task_id)
        if task.task_id == "blocker":
            await release.wait()

    return started, release, handler


def urgent(task_id: str, priority: int, deadline: int | None = None) -> Assignment:
    """An assignment of epoch 1 of ``priority`` (and ``deadline``)."""
    made = assignment(epoch=1, task_id=task_id)
    task = dataclasses.replace(made.task, priority=priority, deadline=deadline)
    return dataclasses.replace(made, task=task)
