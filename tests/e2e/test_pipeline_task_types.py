"""A mixed fleet on the real broker: a ``resize``-only agent next to two that run every type.
Agents announce the types they have handlers for, so the resize-only agent is sent nothing
else: every task completes, none is rejected or dead-lettered for lack of a handler."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from streams.adapters.client import TaskClient
from streams.adapters.dispatcher import Dispatcher
from streams.settings import Settings
from streams.wire import DeadLetter, TaskStatus
from streams.worker import Agent, AgentConfig
from tests.adapters.test_dispatcher_support import (
    running_dispatcher,
    submit_now,
    until,
    with_state,
)
from tests.e2e.test_pipeline_support import (
    DEMO,
    pipeline_config,
    read_all,
    start,
    until_results,
    work,
)

KINDS = ("resize", "thumb", "ocr")


def _details(dispatcher: Dispatcher) -> dict[str, object]:
    details = dispatcher.status_view()["details"]
    assert isinstance(details, dict)
    return details


def _agent(settings: Settings, agent_id: str, **handlers: str) -> Agent:
    config = AgentConfig(
        agent_id=agent_id,
        capacity=3,
        heartbeat_interval_ms=200,
        handler=handlers.pop("every", None),
        handlers=handlers,
    )
    return Agent(config, settings)


def test_an_agent_is_sent_only_the_types_it_has_a_handler_for(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path)
    agents = [
        _agent(settings, "resizer", resize=DEMO),
        _agent(settings, "any-1", every=DEMO),
        _agent(settings, "any-2", every=DEMO),
    ]

    def submit() -> dict[str, str]:
        """Task id -> type, 100 of each."""
        with TaskClient(settings) as client:
            sent = [
                client.submit_new(type=KINDS[i % 3], priority=1, payload=work(5)).task
                for i in range(300)
            ]
        return {task.task_id: task.type for task in sent}

    async def scenario() -> None:
        async with running_dispatcher(settings, pipeline_config()):
            runs = [await start(agent) for agent in agents]
            try:
                kinds = await asyncio.to_thread(submit)
                results = await until_results(settings, set(kinds))
            finally:
                for agent in agents:
                    agent.stop()
                await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)
        statuses = Counter(result.status for result in results)
        assert statuses == {TaskStatus.SUCCEEDED: 300}, statuses  # not one REJECTED
        ran = {result.task_id for result in results if result.agent_id == "resizer"}
        assert ran, "the resize-only agent ran some tasks"
        assert {kinds[task_id] for task_id in ran} == {"resize"}
        letters = await asyncio.to_thread(read_all, settings, settings.topics.dlq, DeadLetter)
        assert letters == []

    asyncio.run(scenario())


def test_a_type_no_agent_handles_waits_and_shows_in_status(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path)
    resizer = _agent(settings, "resizer", resize=DEMO)

    async def scenario() -> None:
        async with running_dispatcher(settings, pipeline_config()) as dispatcher:
            run = await start(resizer)
            try:
                await asyncio.to_thread(submit_now, settings, 2)  # type "work": nobody runs it
                await until(
                    lambda: _details(dispatcher)["held_without_capable_agent"] == {"work": 2},
                    "the unhandled type shown in /status",
                )
                assert _details(dispatcher)["held"] == 2
            finally:
                resizer.stop()
                await asyncio.wait_for(run, 60)

    asyncio.run(scenario())
