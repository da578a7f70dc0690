"""Back-pressure: at ``max_held`` held tasks the dispatcher stops reading the task topics
(Kafka holds the rest, nothing is dropped) and reads again once the agents drain them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.settings import Settings
from tests.adapters.test_dispatcher_support import submit_now, until, with_state
from tests.e2e.test_pipeline_support import pipeline, pipeline_config, start, until_results, work


def test_intake_pauses_at_the_bound_and_resumes(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")
    config = pipeline_config(max_held=20, resume_at=5)

    async def scenario() -> None:
        async with pipeline(settings, [4], config, start_agents=False) as (dispatcher, agents, _):
            first = await asyncio.to_thread(submit_now, settings, 40, payload=work(1))
            await until(lambda: dispatcher.intake.paused, "reading paused")
            await asyncio.sleep(1.0)
            assert dispatcher.core.held == 20  # the bound: the rest waits in Kafka
            later = await asyncio.to_thread(submit_now, settings, 100, payload=work(1))
            await asyncio.sleep(1.0)
            assert dispatcher.core.held == 20  # nothing read while paused
            await start(agents[0])
            await until_results(settings, {task.task_id for task in first + later})
            assert not dispatcher.intake.paused

    asyncio.run(scenario())
