"""A backlog of low-priority tasks, then high-priority ones: the high ones go first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.adapters.client import TaskClient
from streams.settings import Settings
from streams.wire import Task
from tests.adapters.test_dispatcher_support import until, with_state
from tests.e2e.test_pipeline_support import (
    all_assignments,
    pipeline,
    start,
    until_results,
    work,
)

LOW, HIGH = 200, 50


def _submit(settings: Settings, count: int, priority: int) -> list[Task]:
    with TaskClient(settings) as client:
        return [
            client.submit_new(type="work", priority=priority, payload=work(1)).task
            for _ in range(count)
        ]


def test_high_priority_tasks_overtake_a_backlog(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")

    async def scenario() -> None:
        async with pipeline(settings, [2], start_agents=False) as (dispatcher, agents, _):
            low = await asyncio.to_thread(_submit, settings, LOW, 3)
            await until(lambda: dispatcher.core.held == LOW, "the backlog held")
            high = await asyncio.to_thread(_submit, settings, HIGH, 0)
            await until(lambda: dispatcher.core.held == LOW + HIGH, "every task held")
            await start(agents[0])
            await until_results(settings, {task.task_id for task in low + high})

        order = [item.task.priority for item in all_assignments(settings)]
        assert order == [0] * HIGH + [3] * LOW

    asyncio.run(scenario())
