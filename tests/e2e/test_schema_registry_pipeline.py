"""The Confluent wire format end to end on the real broker: a dispatcher, agents and a client,
all with ``schema_registry_url`` set, run tasks and get their results back; every record they
write starts with the magic byte 0 and an id the registry gave; a producer not yet switched
(single-object Avro) is still read; an unreachable registry stops a command with one line.

The registry is ``tests/registry_stub.py`` (why not a real one: its docstring)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient
from streams.adapters.kafka import codec_for
from streams.core.model import AgentState
from streams.settings import Settings
from streams.wire import ResultBatch
from tests.adapters.test_dispatcher_support import with_state
from tests.e2e.test_pipeline_support import pipeline, pipeline_config, read_values, work
from tests.e2e.test_submit_cli import TASKD
from tests.registry_stub import RecordedRegistry, recorded_registry

WAIT_S = 60.0
RECORD_NAMES = {
    "heartbeats": "taskd.AgentHeartbeat",
    "registry": "taskd.AgentRegistration",
    "dispatch": "taskd.AssignmentBatch",
    "results": "taskd.ResultBatch",
    "replies": "taskd.TaskOutcome",
}
"""Topic (attribute of ``settings.topics``) to the record it holds."""


@pytest.fixture(scope="module")
def registry() -> Iterator[RecordedRegistry]:
    with recorded_registry() as state:
        yield state


def test_a_fleet_on_the_registry_runs_tasks_end_to_end(
    registry: RecordedRegistry, topics: Settings, tmp_path: Path
) -> None:
    plain = with_state(topics, tmp_path)
    settings = plain.model_copy(update={"schema_registry_url": registry.url})
    create_topics(settings)
    config = pipeline_config(suspect_after_ms=1_000, down_after_ms=2_000)

    async def scenario() -> list[str]:
        async with pipeline(settings, [2, 2], config) as (dispatcher, _, _):
            older = await asyncio.to_thread(_run_tasks, settings, plain)
            await asyncio.sleep(2.5)  # past the DOWN timeout: only heartbeats keep them READY
            states = {info.agent_id: info.state for info in dispatcher.core.agents()}
            assert states == {"a0": AgentState.READY, "a1": AgentState.READY}
            return older

    older_ids = asyncio.run(scenario())

    codec = codec_for(settings)
    results = [
        result
        for data in read_values(settings, settings.topics.results)
        for result in codec.decode(data, ResultBatch).results
    ]
    done = {result.task_id for result in results if result.status.value == "SUCCEEDED"}
    assert set(older_ids) <= done  # the tasks of the producer not yet switched ran too

    names = {schema_id: json.loads(text)["name"] for schema_id, text in registry.texts.items()}
    for attribute, record in RECORD_NAMES.items():
        values = read_values(settings, getattr(settings.topics, attribute))
        assert values, f"nothing on {attribute}"
        framed = {(data[0], names.get(int.from_bytes(data[1:5], "big"))) for data in values}
        assert framed == {(0, record)}, attribute


def _run_tasks(settings: Settings, plain: Settings) -> list[str]:
    """Tasks from a client on the registry (outputs back) and from one not yet switched."""
    with TaskClient(plain) as older:
        sent = [older.submit_new(type="work", priority=2, payload=work(1)) for _ in range(5)]
    with TaskClient(settings, results=True) as client:
        handles = [client.submit_new(type="work", priority=1, payload=work(2)) for _ in range(20)]
        for handle in handles:
            output = handle.result(timeout=WAIT_S)
            assert output is not None and json.loads(output)["task_id"] == handle.task_id
    return [handle.task_id for handle in sent]


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize(
    "command",
    [
        ("dispatcher",),
        ("agent", "--handler", "streams.examples:work", "--capacity", "2"),
        ("submit", "-"),
    ],
    ids=lambda command: command[0],
)
def test_an_unreachable_registry_stops_a_command_with_one_line(
    topics: Settings, tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = _closed_port_url()
    env = {
        **os.environ,
        "TASKD_BOOTSTRAP_SERVERS": topics.bootstrap_servers,
        "TASKD_TOPIC_PREFIX": topics.topic_prefix,
        "TASKD_SCHEMA_REGISTRY_URL": url,
        "TASKD_DATA_DIR": str(tmp_path),
        "TASKD_HTTP_PORT": "0",
        "TASKD_AGENT_METRICS_PORT": "0",
    }
    task = json.dumps({"type": "work", "priority": 1, "payload": {}})
    done = subprocess.run(
        [str(TASKD), *command],
        input=task + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"schema registry at {url} cannot be reached" in lines[0]
