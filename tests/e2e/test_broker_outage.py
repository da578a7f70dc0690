"""A broker outage under load, as an operator lives it: the broker stopped for longer than the
agents' down timeout while tasks run, then started again. Nothing is lost and nothing runs
twice: the dispatcher does not take the agents' silence for their failure while it cannot hear
the broker itself.

The test has a broker of its own (the jars ``scripts/kafka-start`` fetched, another port and
run directory), so stopping it touches no other test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient
from streams.settings import Settings, load_settings
from streams.wire import Task, TaskStatus
from tests.e2e.test_pipeline_support import all_results, pipeline, pipeline_config, work
from tests.secure_broker import free_ports

BROKER = Path(__file__).resolve().parents[2] / "scripts" / "kafka_broker.py"
OUTAGE_S = 30.0
"""Longer than the agents' down timeout below (6 s): without the rule, every task in flight
would run again."""
TASKS = 40
WORK_MS = 1_500


class OwnBroker:
    """A one-node broker on free ports in a folder of the test's, stopped and started at will."""

    def __init__(self, folder: Path) -> None:
        port, controller = free_ports(2)
        self.address = f"127.0.0.1:{port}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
        self._env = {
            **environ,
            "TASKD_KAFKA_PORT": str(port),
            "TASKD_KAFKA_CONTROLLER_PORT": str(controller),
            "TASKD_KAFKA_RUN_DIR": str(folder),
            "TASKD_KAFKA_HEAP": "384m",
        }

    def run(self, action: str) -> None:
        done = subprocess.run(
            [sys.executable, str(BROKER), action],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        assert done.returncode == 0, f"broker {action}: {done.stdout}{done.stderr}"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    broker = OwnBroker(tmp_path / "kafka")
    broker.run("start")
    try:
        yield broker
    finally:
        broker.run("stop")


def _submit(settings: Settings) -> list[Task]:
    with TaskClient(settings) as client:
        return [
            client.submit_new(type="work", priority=1, payload=work(WORK_MS)).task
            for _ in range(TASKS)
        ]


@pytest.mark.parametrize(
    "session_timeout_ms",
    [
        45_000,  # the group session outlasts the outage: the instance keeps its shards
        6_000,  # the default: the session runs out, the shards are recovered from the changelog
    ],
)
def test_a_broker_outage_longer_than_the_down_timeout_reruns_nothing(
    own_broker: OwnBroker, tmp_path: Path, session_timeout_ms: int
) -> None:
    settings = load_settings(
        bootstrap_servers=own_broker.address,
        topic_prefix=f"outage{uuid.uuid4().hex[:6]}.",
        shards=2,
        dispatch_partitions=4,
        data_dir=tmp_path / "state",
        agent_metrics_port=0,
    )
    create_topics(settings)

    async def scenario() -> list[Task]:
        config = pipeline_config(lease_ms=120_000, session_timeout_ms=session_timeout_ms)
        async with pipeline(settings, [4, 4], config):
            sent = await asyncio.to_thread(_submit, settings)
            await _until_running(settings)
            await asyncio.to_thread(own_broker.run, "stop")
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(own_broker.run, "start")
            await _until_done(settings, {task.task_id for task in sent})
        return sent

    sent = asyncio.run(scenario())
    results = all_results(settings)
    runs = Counter(result.task_id for result in results if result.status is not TaskStatus.REJECTED)
    assert set(runs) == {task.task_id for task in sent}  # nothing lost
    assert max(runs.values()) == 1, [task for task, count in runs.items() if count > 1]
    assert all(result.attempt == 0 for result in results)


async def _until_running(settings: Settings) -> None:
    """Some tasks have finished, so others are running when the broker stops."""
    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(all_results, settings):
        assert time.monotonic() < deadline, "no task finished within 60 s"
        await asyncio.sleep(0.2)


async def _until_done(settings: Settings, expected: set[str]) -> None:
    deadline = time.monotonic() + 180
    while True:
        results = await asyncio.to_thread(all_results, settings)
        done = {r.task_id for r in results if r.status is TaskStatus.SUCCEEDED}
        if expected <= done:
            return
        assert time.monotonic() < deadline, f"{len(expected - done)} task(s) without a result"
        await asyncio.sleep(1.0)
