"""Deadlines and TTLs: a task that cannot start in time ends in the dead letters EXPIRED and is
never run; the others run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from streams.adapters.client import TaskClient
from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import Task, TaskStatus
from tests.adapters.test_dispatcher_support import with_state
from tests.e2e.test_pipeline_support import pipeline, start, until_dead, until_results, work


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _submit(settings: Settings, count: int, work_ms: float, **options: Any) -> list[Task]:
    with TaskClient(settings) as client:
        return [
            client.submit_new(type="work", priority=1, payload=work(work_ms), **options).task
            for _ in range(count)
        ]


def test_tasks_that_cannot_start_in_time_expire(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")

    async def scenario() -> None:
        async with pipeline(settings, [2], start_agents=False) as (_, agents, _):
            late = await asyncio.to_thread(_submit, settings, 10, 0, deadline=_now_ms() + 1_000)
            ttl = await asyncio.to_thread(_submit, settings, 10, 0, ttl_ms=1_000)
            easy = await asyncio.to_thread(_submit, settings, 10, 0)
            letters = await until_dead(settings, 20)  # nobody runs anything until then
            await start(agents[0])
            results = await until_results(settings, {task.task_id for task in easy})

        expired = {le.task.task_id for le in letters if le.task is not None}
        assert expired == {task.task_id for task in late + ttl}
        assert {le.reason for le in letters} == {DeadLetterReason.EXPIRED}
        assert {r.task_id for r in results} == {task.task_id for task in easy}

    asyncio.run(scenario())


def test_under_load_each_task_either_runs_or_expires_never_both(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")

    async def scenario() -> None:
        async with pipeline(settings, [1]):
            tasks = await asyncio.to_thread(_submit, settings, 12, 250, deadline=_now_ms() + 1_200)
            ids = {task.task_id for task in tasks}
            deadline_s = time.monotonic() + 120
            while True:
                results = await until_results(settings, set())
                letters = await until_dead(settings, 0)
                ran = {r.task_id for r in results if r.status is TaskStatus.SUCCEEDED}
                dead = {le.task.task_id for le in letters if le.task is not None}
                if ran | dead == ids:
                    break
                assert time.monotonic() < deadline_s, "some tasks neither ran nor expired"
                await asyncio.sleep(0.5)

        assert not ran & dead
        assert ran and dead  # one slot, 250 ms each: some make it, some cannot
        assert {le.reason for le in letters} == {DeadLetterReason.EXPIRED}

    asyncio.run(scenario())
