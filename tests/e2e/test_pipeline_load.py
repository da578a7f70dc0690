"""10,000 tasks over four real agents of different speeds and capacities: each succeeds exactly
once, none is lost, no agent ever holds more than its capacity, every agent works."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

from streams.adapters.client import TaskClient
from streams.settings import Settings
from streams.wire import DeadLetter, Task, TaskStatus
from tests.adapters.test_dispatcher_support import inputs_committed, until_read, with_state
from tests.e2e.test_pipeline_support import pipeline, read_all, until_results, work

TASKS = 10_000
CAPACITIES = (1, 2, 4, 8)
SPEEDS = tuple(f"tests.e2e.speeds:{speed}" for speed in ("fast", "steady", "slow", "steady"))


def _submit(settings: Settings, count: int) -> list[Task]:
    rng = random.Random(7)
    with TaskClient(settings) as client:
        return [
            client.submit_new(type="work", priority=rng.randrange(4), payload=work()).task
            for _ in range(count)
        ]


def test_every_task_succeeds_once_over_agents_of_different_speeds_and_capacities(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")

    async def scenario() -> None:
        async with pipeline(settings, CAPACITIES, handlers=SPEEDS) as (_, _, watch):
            sent = await asyncio.to_thread(_submit, settings, TASKS)
            ids = {task.task_id for task in sent}
            results = await until_results(settings, ids)
            assert watch.over() == {}
            await until_read(lambda: inputs_committed(settings), "every input committed")

        succeeded = Counter(r.task_id for r in results if r.status is TaskStatus.SUCCEEDED)
        assert set(succeeded) == ids
        assert max(succeeded.values()) == 1, "a task succeeded twice"
        assert all(r.status is TaskStatus.SUCCEEDED for r in results)
        by_agent = Counter(r.agent_id for r in results)
        assert set(by_agent) == {f"a{i}" for i in range(len(CAPACITIES))}, by_agent
        assert read_all(settings, settings.topics.dlq, DeadLetter) == []

    asyncio.run(scenario())
