"""Routing through the real pipeline: required skills, zone preference, a manual target and
affinity keys send each task where it should go, on real agents; a task no agent can run ends
in the dead letters as NO_CAPABLE_AGENT."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

from streams.adapters.client import TaskClient
from streams.adapters.dispatcher import Dispatcher
from streams.core.model import DeadLetterReason, Job
from streams.settings import Settings
from streams.wire import Task, TaskResult, TaskStatus, task_to_job
from streams.worker import Agent, AgentConfig
from tests.adapters.test_dispatcher_support import running_dispatcher, until, with_state
from tests.e2e.test_pipeline_support import (
    DEMO,
    agents_running,
    pipeline_config,
    until_dead,
    until_results,
    work,
)

FLEET = {
    # agent id: (capacity, skills, zone)
    "gpu-eu": (8, ("gpu",), "eu"),
    "cpu-us": (8, ("cpu",), "us"),
    "cpu-eu": (8, ("cpu",), "eu"),
}


@contextlib.asynccontextmanager
async def fleet(settings: Settings) -> AsyncIterator[Dispatcher]:
    agents = [
        Agent(
            AgentConfig(
                agent_id=agent_id,
                capacity=capacity,
                skills=skills,
                zone=zone,
                handler=DEMO,
                heartbeat_interval_ms=200,
            ),
            settings,
        )
        for agent_id, (capacity, skills, zone) in FLEET.items()
    ]
    # an agent late with its heartbeats on a busy machine is SUSPECT, and leaves the tier: slow
    # the health timings down so the routing seen is the router's, not the machine's
    config = pipeline_config(
        suspect_after_ms=15_000, down_after_ms=30_000, no_capable_agent_ms=1_000
    )
    async with running_dispatcher(settings, config) as dispatcher, agents_running(agents):
        yield dispatcher


async def ended(dispatcher: Dispatcher, tasks: list[Task]) -> None:
    """Wait until the dispatcher has seen every one of ``tasks`` end: known to it (a duplicate
    if read again) and neither held nor in flight."""
    core = dispatcher.core
    jobs = [task_to_job(task) for task in tasks]

    def done(job: Job) -> bool:
        return core.is_duplicate(job) and core.phase_of(job.task_id) is None

    await until(lambda: all(done(job) for job in jobs), "the tasks ended")


def _placement(results: list[TaskResult], tasks: list[Task]) -> dict[str, str]:
    ids = {task.task_id for task in tasks}
    return {
        r.task_id: r.agent_id
        for r in results
        if r.task_id in ids and r.status is TaskStatus.SUCCEEDED
    }


def test_skills_zone_target_and_affinity_route_where_they_should(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")

    def submit_constrained() -> dict[str, list[Task]]:
        with TaskClient(settings) as client:

            def many(count: int, **options: object) -> list[Task]:
                return [
                    client.submit_new(type="work", priority=1, payload=work(5), **options).task  # type: ignore[arg-type]
                    for _ in range(count)
                ]

            groups = {
                "nobody": many(2, required_skills=("quantum",)),
                "gpu-eu": many(8, required_skills=("gpu",)),
                "cpu-us": many(8, required_skills=("cpu",), zone="us"),
                "cpu-eu": many(8, target_agent="cpu-eu"),
            }
            client.flush()
            return groups

    async def submit_affine(dispatcher: Dispatcher) -> dict[str, list[Task]]:
        """One task at a time, each submitted once the one before has ended: the key's agent
        is then free and under its load bound, so any move would be the router's choice."""
        keyed: dict[str, list[Task]] = defaultdict(list)
        with TaskClient(settings) as client:
            for _ in range(6):
                for key in ("tenant-a", "tenant-b", "tenant-c"):
                    task = client.submit_new(
                        type="work", priority=1, payload=work(0), affinity_key=key
                    ).task
                    await asyncio.to_thread(client.flush)
                    keyed[key].append(task)
                    await ended(dispatcher, [task])
        return keyed

    async def scenario() -> None:
        async with fleet(settings) as dispatcher:
            groups = await asyncio.to_thread(submit_constrained)
            orphans = groups.pop("nobody")
            await ended(dispatcher, [task for tasks in groups.values() for task in tasks])
            keyed = await submit_affine(dispatcher)
            every = [task for tasks in (*groups.values(), *keyed.values()) for task in tasks]
            letters = await until_dead(settings, len(orphans))
            results = await until_results(
                settings, {task.task_id for task in every}, statuses={"SUCCEEDED"}
            )

        for agent_id, tasks in groups.items():
            placed = _placement(results, tasks)
            assert set(placed.values()) == {agent_id}, (agent_id, Counter(placed.values()))
        for key, tasks in keyed.items():
            placed = _placement(results, tasks)
            order = [placed[task.task_id] for task in tasks]
            assert len(set(order)) == 1, f"affinity key {key} went to {order}"

        assert {(d.task.task_id, d.reason) for d in letters if d.task} == {
            (task.task_id, DeadLetterReason.NO_CAPABLE_AGENT) for task in orphans
        }
        assert not {task.task_id for task in orphans} & {r.task_id for r in results}

    asyncio.run(scenario())
