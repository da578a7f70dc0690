"""Ordered keys through the pipeline: the tasks sharing an ordering key run one at a time, in
the order they were sent, retries included, while different keys run side by side."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections import defaultdict
from pathlib import Path

from streams.adapters.client import TaskClient
from streams.settings import Settings
from streams.wire import Task, TaskResult
from tests.adapters.test_dispatcher_support import until_read, with_state
from tests.e2e.test_pipeline_crash import CRASH, taskd
from tests.e2e.test_pipeline_support import agent as make_agent
from tests.e2e.test_pipeline_support import (
    agents_running,
    all_results,
    pipeline,
    until_results,
    work,
)

KEYS, PER_KEY = 40, 6
FAILING_KEYS = 8
"""Keys whose third task fails every attempt (two, then its dead letter): the tasks after it
must wait for its end."""


def _send(settings: Settings) -> list[Task]:
    rng = random.Random(7)
    tasks = []
    with TaskClient(settings) as client:
        for index in range(PER_KEY):
            for key in range(KEYS):
                fails = index == 2 and key < FAILING_KEYS
                payload = work(rng.uniform(5, 30), "retryable" if fails else None)
                options = {"max_attempts": 2} if fails else {}
                handle = client.submit_new(
                    type="work", priority=1, payload=payload, ordering_key=f"k{key}", **options
                )
                tasks.append(handle.task)
    return tasks


def _most_at_once(runs: list[TaskResult]) -> int:
    edges = sorted([(r.started_at, 1) for r in runs] + [(r.finished_at, -1) for r in runs])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_a_keys_tasks_run_one_at_a_time_in_the_order_sent(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")

    async def scenario() -> list[TaskResult]:
        async with pipeline(settings, [8, 8, 8]):
            tasks = await asyncio.to_thread(_send, settings)
            sent[:] = tasks
            return await until_results(settings, {task.task_id for task in tasks})

    sent: list[Task] = []
    results = asyncio.run(scenario())
    order = {task.task_id: (task.ordering_key, index) for index, task in enumerate(sent)}
    runs: dict[str, list[tuple[int, int, TaskResult]]] = defaultdict(list)
    for result in results:
        key, index = order[result.task_id]
        assert key is not None
        runs[key].append((index, result.attempt, result))
    for key, key_runs in runs.items():
        key_runs.sort(key=lambda run: run[:2])
        for (_, _, before), (_, _, after) in itertools.pairwise(key_runs):
            assert after.started_at >= before.finished_at, (
                f"{key}: {after.task_id} (attempt {after.attempt}) started at "
                f"{after.started_at}, before {before.task_id} (attempt {before.attempt}) "
                f"ended at {before.finished_at}"
            )
    retried = [len(key_runs) for key, key_runs in runs.items() if int(key[1:]) < FAILING_KEYS]
    assert retried == [PER_KEY + 1] * FAILING_KEYS  # the failing task ran twice
    assert _most_at_once(results) > 8  # keys ran side by side


def test_a_dispatcher_killed_under_load_keeps_each_key_in_order(
    topics: Settings, tmp_path: Path
) -> None:
    """``taskd dispatcher`` SIGKILLed mid-way and started again: a key's head comes back from
    the changelog (or its input) before the tasks behind it, so no task of a key starts before
    the one sent before it has ended (a re-run of that one, at least once, may still overlap)."""
    settings = with_state(topics, tmp_path / "state")
    log = tmp_path / "dispatcher.log"
    agents = [make_agent(settings, f"a{i}", 6) for i in range(3)]

    def send() -> list[Task]:
        rng = random.Random(3)
        with TaskClient(settings) as client:
            return [
                client.submit_new(
                    type="work",
                    priority=1,
                    payload=work(rng.uniform(20, 60)),
                    ordering_key=f"k{key}",
                ).task
                for _ in range(8)
                for key in range(30)
            ]

    async def scenario() -> tuple[list[Task], list[TaskResult]]:
        async with agents_running(agents):
            with taskd(settings, log, "dispatcher", *CRASH, ready="dispatcher ready") as first:
                tasks = await asyncio.to_thread(send)
                await until_read(lambda: len(all_results(settings)) >= 60, "60 results", 120)
                first.send_signal(signal.SIGKILL)
                first.wait(10)
            with taskd(settings, log, "dispatcher", *CRASH, ready="dispatcher ready"):
                results = await until_results(settings, {task.task_id for task in tasks})
        return tasks, results

    tasks, results = asyncio.run(scenario())
    first_end: dict[str, int] = {}
    first_start: dict[str, int] = {}
    for result in results:
        first_start[result.task_id] = min(first_start.get(result.task_id, 2**62), result.started_at)
        first_end[result.task_id] = min(first_end.get(result.task_id, 2**62), result.finished_at)
    for key in {task.ordering_key for task in tasks}:
        line = [task.task_id for task in tasks if task.ordering_key == key]
        for before, after in itertools.pairwise(line):
            assert first_start[after] >= first_end[before], f"{key}: {after} overtook {before}"
