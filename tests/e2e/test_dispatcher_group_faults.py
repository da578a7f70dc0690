"""Several ``taskd dispatcher`` processes with one topic prefix, under load, on the real broker:
one killed with SIGKILL has its shards taken over by the others, an instance added joins, and
in both cases every task completes, none runs twice where the test says so, and no agent ever
runs more tasks at once than its capacity (counted from the results' start and end times)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams.adapters.admin import create_topics, delete_topics
from streams.settings import Settings
from streams.wire import Assignment, TaskResult, TaskStatus
from tests.adapters.test_dispatcher_support import submit_now, with_state
from tests.e2e.test_pipeline_crash import FAST, taskd
from tests.e2e.test_pipeline_support import agent as make_agent
from tests.e2e.test_pipeline_support import (
    all_assignments,
    all_results,
    start,
    until_results,
    work,
)

CAPACITIES = (4, 4, 4)
SHARDS = 6
GROUP = ["dispatcher", *FAST, "--no-web", "--lease-ms", "5000", "--session-timeout-ms", "6000"]
TAKEOVER_GOAL_MS = 10_000
_SHARDS_LINE = re.compile(rb"shards (\[[0-9, ]*\]) assigned")


@pytest.fixture
def group_settings(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Six shards (two per instance with three), topics of their own, deleted afterwards."""
    ours = with_state(settings.model_copy(update={"shards": SHARDS}), tmp_path / "state")
    admin = AdminClient(ours.kafka_config())
    create_topics(ours, admin)
    yield ours
    delete_topics(ours, admin)


@contextmanager
def instances(settings: Settings, logs: list[Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One ``taskd dispatcher`` per log, started one after the other, each once ready."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(taskd(settings, log, *GROUP, ready="dispatcher ready"))
            for log in logs
        ]


def last_shards(log: Path) -> list[int]:
    """The shards an instance was last given, from its log."""
    found = _SHARDS_LINE.findall(log.read_bytes())
    assert found, f"no shard assignment in {log.name}"
    return [int(s) for s in found[-1].strip(b"[]").split(b",") if s.strip()]


def most_running_at_once(results: list[TaskResult]) -> dict[str, int]:
    """Per agent, the most runs that overlapped in time (an end at t comes before a start at t)."""
    runs = {
        (result.task_id, result.attempt, result.agent_id): result
        for result in results  # a result handed on to its shard's new owner is seen twice
        if result.status is not TaskStatus.REJECTED
    }
    edges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for result in runs.values():
        edges[result.agent_id] += [(result.started_at, 1), (result.finished_at, -1)]
    peaks: dict[str, int] = {}
    for agent_id, points in edges.items():
        running = peak = 0
        for _, step in sorted(points, key=lambda point: (point[0], point[1])):
            running += step
            peak = max(peak, running)
        peaks[agent_id] = peak
    return peaks


def most_assigned_at_once(
    assignments: list[Assignment], results: list[TaskResult]
) -> dict[str, int]:
    """Per agent, the most attempts sent to it and not yet finished, by the records' times."""
    ends = {(r.task_id, r.attempt): r.finished_at for r in results}
    edges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for item in assignments:
        end = ends.get((item.task.task_id, item.task.attempt))
        edges[item.agent_id].append((item.dispatched_at, 1))
        if end is not None:
            edges[item.agent_id].append((end, -1))
    peaks: dict[str, int] = {}
    for agent_id, points in edges.items():
        running = peak = 0
        for _, step in sorted(points):
            running += step
            peak = max(peak, running)
        peaks[agent_id] = peak
    return peaks


def _check_capacity(results: list[TaskResult]) -> None:
    for agent_id, peak in most_running_at_once(results).items():
        capacity = CAPACITIES[int(agent_id.removeprefix("g"))]
        assert peak <= capacity, f"{agent_id} ran {peak} tasks at once, capacity {capacity}"


async def _until_done(settings: Settings, least: int) -> None:
    deadline = time.monotonic() + 120
    while len(await asyncio.to_thread(_succeeded, settings)) < least:
        assert time.monotonic() < deadline, f"fewer than {least} tasks done within 120 s"
        await asyncio.sleep(0.2)


def _succeeded(settings: Settings) -> set[str]:
    return {r.task_id for r in all_results(settings) if r.status is TaskStatus.SUCCEEDED}


def test_an_instance_killed_under_load_is_taken_over_in_time_and_loses_nothing(
    group_settings: Settings, tmp_path: Path
) -> None:
    settings = group_settings
    logs = [tmp_path / f"dispatcher-{index}.log" for index in range(3)]
    agents = [make_agent(settings, f"g{i}", capacity) for i, capacity in enumerate(CAPACITIES)]

    async def scenario() -> None:
        runs = [await start(each) for each in agents]
        try:
            with instances(settings, logs) as group:
                await asyncio.sleep(3)  # the last join's rebalance settles
                orphaned = last_shards(logs[0])
                sent = await asyncio.to_thread(submit_now, settings, 1500, payload=work(10))
                await _until_done(settings, 150)
                killed_ms = time.time_ns() // 1_000_000
                group[0].send_signal(signal.SIGKILL)
                group[0].wait(10)
                ids = {task.task_id for task in sent}
                results = await until_results(settings, ids, statuses={"SUCCEEDED"})
            taken_over = min(
                item.dispatched_at
                for item in await asyncio.to_thread(all_assignments, settings)
                if item.dispatcher_shard in orphaned and item.dispatched_at > killed_ms
            )
            takeover_ms = taken_over - killed_ms
            print(f"shards {orphaned} taken over {takeover_ms} ms after the kill")
            assigned = await asyncio.to_thread(all_assignments, settings)
            print("most assigned at once", most_assigned_at_once(assigned, results))
            assert takeover_ms <= TAKEOVER_GOAL_MS
            assert {r.task_id for r in results if r.status is TaskStatus.SUCCEEDED} == ids
            _check_capacity(results)
        finally:
            for each in agents:
                each.stop()
            await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)

    asyncio.run(scenario())


def test_an_instance_added_under_load_joins_and_dispatches_nothing_twice(
    group_settings: Settings, tmp_path: Path
) -> None:
    settings = group_settings
    logs = [tmp_path / f"dispatcher-{index}.log" for index in range(3)]
    agents = [make_agent(settings, f"g{i}", capacity) for i, capacity in enumerate(CAPACITIES)]

    async def scenario() -> None:
        runs = [await start(each) for each in agents]
        try:
            with instances(settings, logs[:2]):
                sent = await asyncio.to_thread(submit_now, settings, 1500, payload=work(10))
                await _until_done(settings, 150)
                with instances(settings, logs[2:]):
                    ids = {task.task_id for task in sent}
                    results = await until_results(settings, ids, statuses={"SUCCEEDED"})
                    joined = last_shards(logs[2])
            assignments = await asyncio.to_thread(all_assignments, settings)
            print("most assigned at once", most_assigned_at_once(assignments, results))
            twice = {k: n for k, n in Counter(a.task.task_id for a in assignments).items() if n > 1}
            assert twice == {}, f"{len(twice)} task(s) dispatched more than once"
            assert joined, "the added instance was given shards"
            assert {a.dispatcher_shard for a in assignments} >= set(joined)
            assert {r.task_id for r in results if r.status is TaskStatus.SUCCEEDED} == ids
            _check_capacity(results)
        finally:
            for each in agents:
                each.stop()
            await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)

    asyncio.run(scenario())
