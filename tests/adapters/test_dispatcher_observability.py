"""The running dispatcher's observability: its metrics, HTTP views and the ``events`` topic,
with a real agent against the real broker, and ``taskd status`` reading the live views."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.adapters.dispatcher import Dispatcher
from streams.adapters.http import check_address
from streams.errors import ConfigError
from streams.settings import Settings
from streams.wire import Task, TaskEvent, TaskEventKind, TaskStatus
from streams.worker import Agent, FatalError
from tests.adapters.test_dispatcher_support import (
    dispatcher_config,
    running_dispatcher,
    submit,
    until,
    with_state,
)
from tests.adapters.test_worker_support import WAIT_S, config, running
from tests.e2e.test_pipeline_support import read_all

TASKD = Path(sys.executable).parent / "taskd"
TASKS = 12
CAPACITY = 4
K = TaskEventKind
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def work(task: Task) -> bytes:
    """The agent's handler: ``fail`` in the payload fails the task for good."""
    if task.payload == b"fail":
        raise FatalError("cannot do it")
    return b"done"


def _settings(topics: Settings, tmp_path: Path) -> Settings:
    """Views on a free port (0 bypasses the settings' check: ``model_copy`` does not validate)."""
    return with_state(topics, tmp_path / "state").model_copy(update={"http_port": 0})


def _agent(settings: Settings) -> Agent:
    return Agent(config(capacity=CAPACITY, handlers={"work": work}), settings)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as response:
        kind = response.headers.get("Content-Type", "").split(";")[0]
        return response.status, kind, await response.text()


async def _samples(session: aiohttp.ClientSession, base: str) -> Samples:
    """Every sample of ``/metrics`` by (name, labels)."""
    status, _, text = await _get(session, base + "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _sum(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (whatever their other labels)."""
    wanted = frozenset(labels.items())
    return sum(
        value for (found, held), value in samples.items() if found == name and wanted <= held
    )


@pytest.fixture
def live(topics: Settings, tmp_path: Path) -> Settings:
    return _settings(topics, tmp_path)


async def _settled(session: aiohttp.ClientSession, base: str, ended: int, received: int) -> Samples:
    """The metrics once ``received`` tasks and ``ended`` results are counted and the gauges
    show the idle agent (the tasks' topics are read in no set order)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        samples = await _samples(session, base)
        results = _sum(samples, "taskd_results_total")
        idle = _value(samples, "taskd_agents_capacity", agent="a1") == CAPACITY
        taken = _value(samples, "taskd_tasks_received_total") >= received
        if taken and results >= ended and idle and _value(samples, "taskd_in_flight") == 0:
            return samples
        assert time.monotonic() < deadline, f"{results} of {ended} results counted"
        await asyncio.sleep(0.2)


def _taskd_status(url: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TASKD_")}
    return subprocess.run(
        [str(TASKD), "status", "--json", "--url", url],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
    )


def test_metrics_views_and_the_status_command_of_a_live_dispatcher(live: Settings) -> None:
    async def scenario() -> None:
        async with (
            running_dispatcher(live, dispatcher_config(web_enabled=True)) as dispatcher,
            running(_agent(live)),
            aiohttp.ClientSession() as session,
        ):
            base = dispatcher.http_url
            assert base is not None and base.startswith("http://127.0.0.1:")
            await submit(live, TASKS)
            await submit(live, 1, payload=b"fail")
            await submit(live, 1, deadline=1)  # long past: expires before dispatch
            samples = await _settled(session, base, TASKS + 1, TASKS + 2)
            _check_metrics(samples)
            # the figures behind /status are cached for a few seconds: wait until they show all
            await until(
                lambda: (
                    dispatcher.status_view()["status"] == "idle"
                    and dispatcher.status_view()["progress"]["tasks_distributed"] == str(TASKS + 1)
                ),
                "the status says idle, every task distributed",
            )
            await _check_views(session, base)
            result = await asyncio.to_thread(_taskd_status, base)
            assert result.returncode == 0, result.stderr
            printed = json.loads(result.stdout)
            assert printed["agent"] == "task-distributor"
            assert printed["progress"]["tasks_distributed"] == str(TASKS + 1)
            assert printed["details"]["dead_lettered"]["FAILED"] == 1

    asyncio.run(scenario())


def _check_metrics(samples: Samples) -> None:
    assert _value(samples, "taskd_tasks_received_total") == TASKS + 2
    assert _value(samples, "taskd_tasks_dispatched_total", priority="p1") == TASKS + 1
    assert _value(samples, "taskd_results_total", status="SUCCEEDED", priority="p1") == TASKS
    assert _value(samples, "taskd_results_total", status="FAILED", priority="p1") == 1
    assert _value(samples, "taskd_tasks_dead_lettered_total", reason="FAILED") == 1
    assert _value(samples, "taskd_tasks_dead_lettered_total", reason="EXPIRED") == 1
    assert _value(samples, "taskd_tasks_expired_total") == 1
    assert _value(samples, "taskd_dispatch_latency_seconds_count", priority="p1") == TASKS + 1
    queued = _value(samples, "taskd_queue_time_seconds_count", priority="p1", type="work")
    assert queued == TASKS + 1
    assert _value(samples, "taskd_run_time_seconds_count", type="work") == TASKS + 1
    assert _value(samples, "taskd_agents", state="READY") == 1
    assert _value(samples, "taskd_agents_utilization", agent="a1") == 0
    assert _value(samples, "taskd_queue_depth", priority="p1") == 0


async def _check_views(session: aiohttp.ClientSession, base: str) -> None:
    status, kind, text = await _get(session, base + "/status")
    assert (status, kind) == (200, "application/json")
    progress = json.loads(text)
    assert progress["status"] == "idle"
    assert progress["progress"]["tasks_distributed"] == str(TASKS + 1)
    assert progress["details"]["completed"] == TASKS
    status, _, text = await _get(session, base + "/context")
    assert status == 200
    agents = json.loads(text)["agents"]
    assert [(a["id"], a["capacity"], a["state"]) for a in agents] == [("a1", CAPACITY, "READY")]
    status, kind, page = await _get(session, base + "/")
    assert (status, kind) == (200, "text/html")
    assert "taskd dashboard" in page


def _lives(events: list[TaskEvent]) -> Mapping[str, list[TaskEvent]]:
    """Each task's events in the order of the topic (one task's all go to one partition)."""
    by_task: defaultdict[str, list[TaskEvent]] = defaultdict(list)
    for event in events:
        by_task[event.task_id].append(event)
    return by_task


def test_with_events_on_each_task_ends_with_one_event(live: Settings) -> None:
    async def scenario() -> tuple[list[Task], Task, Task]:
        async with (
            running_dispatcher(live, dispatcher_config(events_enabled=True)),
            running(_agent(live)),
        ):
            done = await submit(live, TASKS, tenant="acme")
            (failing,) = await submit(live, 1, payload=b"fail")
            (expired,) = await submit(live, 1, deadline=1)
            await _until_events(live, TASKS + 2)
        return done, failing, expired

    done, failing, expired = asyncio.run(scenario())
    lives = _lives(read_all(live, live.topics.events, TaskEvent))
    assert len(lives) == TASKS + 2
    for task in done:
        (event,) = lives[task.task_id]
        assert (event.kind, event.type, event.priority, event.tenant, event.attempt) == (
            K.COMPLETED,
            "work",
            1,
            "acme",
            0,
        )
        assert (event.agent_id, event.status) == ("a1", TaskStatus.SUCCEEDED)
        assert event.submitted_at == task.submitted_at
        assert event.started_at is not None and task.submitted_at <= event.started_at <= event.at
    (failed,) = lives[failing.task_id]
    assert (failed.kind, failed.reason, failed.error) == (K.DEAD_LETTERED, "FAILED", "cannot do it")
    assert failed.started_at is not None
    (gone,) = lives[expired.task_id]
    assert (gone.kind, gone.reason, gone.started_at) == (K.DEAD_LETTERED, "EXPIRED", None)


async def _until_events(settings: Settings, count: int) -> None:
    async def enough() -> bool:
        found = await asyncio.to_thread(read_all, settings, settings.topics.events, TaskEvent)
        return len(found) >= count

    deadline = time.monotonic() + WAIT_S
    while not await enough():
        assert time.monotonic() < deadline, f"fewer than {count} events within {WAIT_S} s"
        await asyncio.sleep(0.5)


def test_events_are_off_by_default(live: Settings) -> None:
    async def scenario() -> None:
        async with (
            running_dispatcher(live, dispatcher_config()) as dispatcher,
            running(_agent(live)),
        ):
            assert dispatcher.http_url is None  # web off, as the tests' default config says
            await submit(live, 3)
            metrics = dispatcher.metrics.registry
            await until(
                lambda: (
                    metrics.get_sample_value(
                        "taskd_results_total", {"status": "SUCCEEDED", "priority": "p1"}
                    )
                    == 3
                ),
                "three results",
            )

    asyncio.run(scenario())
    assert read_all(live, live.topics.events, TaskEvent) == []


def test_status_says_starting_before_the_dispatcher_is_ready(
    settings: Settings, tmp_path: Path
) -> None:
    dispatcher = Dispatcher(_settings(settings, tmp_path), dispatcher_config())
    view = dispatcher.status_view()
    assert (view["status"], view["agent"]) == ("starting", "task-distributor")
    assert dispatcher.context_view()["agents"] == []


def test_a_busy_http_port_is_a_config_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*TASKD_HTTP_PORT"):
            check_address("127.0.0.1", port)
    check_address("127.0.0.1", 0)
