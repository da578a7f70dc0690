"""Crashes as an operator meets them: ``taskd dispatcher`` killed with SIGKILL under load and
started again, an agent killed with SIGKILL: every task still completes, none is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streams.adapters.admin import create_topics
from streams.adapters.client import TaskClient
from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import DeadLetter, OutcomeStatus, TaskOutcome, TaskResult, TaskStatus
from tests.adapters.test_dispatcher_support import (
    FakeAgent,
    answer,
    assignments,
    register,
    running_dispatcher,
    submit,
    submit_now,
    until,
    with_state,
)
from tests.e2e.test_pipeline_support import (
    DEMO,
    agents_running,
    all_assignments,
    all_results,
    pipeline,
    pipeline_config,
    read_all,
    read_stamped,
    until_results,
    work,
)
from tests.e2e.test_pipeline_support import agent as make_agent

# `taskd dispatcher`: registered here when streams.cli.main does not register it (yet).
TASKD = (
    "import sys\n"
    "from streams.cli.main import app, main\n"
    "from streams.cli.dispatcher import dispatcher\n"
    "names = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}\n"
    "if 'dispatcher' not in names:\n"
    "    app.command('dispatcher')(dispatcher)\n"
    "sys.argv[0] = 'taskd'\n"
    "main()\n"
)
FAST = ["--heartbeat-ms", "200", "--suspect-after-ms", "3000", "--down-after-ms", "6000"]
CRASH = FAST
"""The default lease (300 s): a task stranded by a kill would make a test wait it out and fail,
so no crash test may need the lease to settle what a kill left."""
READY_S = 60.0


def taskd_env(settings: Settings) -> dict[str, str]:
    """The environment a ``taskd`` process of these settings gets (agents on any metrics port)."""
    return {
        **os.environ,
        "TASKD_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TASKD_TOPIC_PREFIX": settings.topic_prefix,
        "TASKD_SHARDS": str(settings.shards),
        "TASKD_DISPATCH_PARTITIONS": str(settings.dispatch_partitions),
        "TASKD_DATA_DIR": str(settings.data_dir),
        "TASKD_AGENT_METRICS_PORT": "0",
    }


@contextmanager
def taskd(
    settings: Settings,
    log: Path,
    *args: str,
    ready: str,
    env: dict[str, str] | None = None,
    program: list[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``taskd ARGS`` in the background (output in ``log``), once ``ready`` is in its output;
    SIGTERM (then SIGKILL) at the end if it still runs. ``env``: the process's environment
    (default: the settings' variables); ``program``: what runs (default: the CLI's code, by
    this interpreter)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*(program or [sys.executable, "-c", TASKD]), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or taskd_env(settings),
        )
    try:
        deadline = time.monotonic() + READY_S
        while ready.encode() not in log.read_bytes():
            assert process.poll() is None, f"taskd {args[0]} exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, (
                f"taskd {args[0]} not ready: {log.read_text()[-2000:]}"
            )
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def _until_count(settings: Settings, least: int, agent_id: str | None = None) -> None:
    deadline = time.monotonic() + 120
    while True:
        results = await asyncio.to_thread(all_results, settings)
        if len([r for r in results if agent_id in (None, r.agent_id)]) >= least:
            return
        assert time.monotonic() < deadline, f"fewer than {least} results within 120 s"
        await asyncio.sleep(0.3)


def _no_loss(settings: Settings, ids: set[str], results: list[TaskResult]) -> None:
    succeeded = {r.task_id for r in results if r.status is TaskStatus.SUCCEEDED}
    assert succeeded == ids
    letters = read_all(settings, settings.topics.dlq, DeadLetter)
    assert [le.reason for le in letters if le.reason is not DeadLetterReason.MALFORMED] == []


def test_a_dispatcher_killed_under_load_loses_nothing(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")
    log = tmp_path / "dispatcher.log"
    ready = "dispatcher ready"
    agents = [make_agent(settings, f"a{i}", capacity) for i, capacity in enumerate((2, 3, 4))]

    async def scenario() -> None:
        async with agents_running(agents):
            with taskd(settings, log, "dispatcher", *CRASH, ready=ready) as first:
                sent = await asyncio.to_thread(submit_now, settings, 600, payload=work(10))
                await _until_count(settings, 150)
                _kill(first)
            with taskd(settings, log, "dispatcher", *CRASH, ready=ready):
                results = await until_results(settings, {task.task_id for task in sent})
            _no_loss(settings, {task.task_id for task in sent}, results)

    asyncio.run(scenario())


def test_a_client_waiting_for_outcomes_gets_each_once_across_a_dispatcher_kill(
    topics: Settings, tmp_path: Path
) -> None:
    """A producer waits for its outcomes while the dispatcher is SIGKILLed with most of them
    pending, and started again: every handle gets its task's output, and each outcome is one an
    agent reported (none is lost in the crash; the client drops an outcome written twice)."""
    settings = with_state(topics, tmp_path / "state")
    create_topics(settings)
    log = tmp_path / "dispatcher.log"
    ready = "dispatcher ready"
    agents = [make_agent(settings, f"a{i}", capacity) for i, capacity in enumerate((2, 3, 4))]

    async def scenario() -> list[TaskOutcome]:
        async with agents_running(agents):
            with TaskClient(settings, results=True) as client:
                with taskd(settings, log, "dispatcher", *CRASH, ready=ready) as first:
                    handles = [
                        client.submit_new(type="work", priority=1, payload=work(10))
                        for _ in range(400)
                    ]
                    await _until_count(settings, 100)
                    _kill(first)
                with taskd(settings, log, "dispatcher", *CRASH, ready=ready):
                    return await asyncio.to_thread(client.wait, handles, 120)

    outcomes = asyncio.run(scenario())
    assert len({outcome.task_id for outcome in outcomes}) == 400
    assert all(outcome.status is OutcomeStatus.SUCCEEDED for outcome in outcomes)
    for outcome in outcomes:
        assert outcome.output is not None
        assert json.loads(outcome.output)["task_id"] == outcome.task_id
    results = {(r.task_id, r.attempt): r for r in all_results(settings)}
    for outcome in outcomes:  # the outcome is what an agent reported, not a guess
        assert (outcome.task_id, outcome.attempts - 1) in results


def test_a_task_that_ran_before_a_kill_ends_with_its_result_when_read_again(
    topics: Settings, tmp_path: Path
) -> None:
    """A dispatcher killed before any checkpoint: its task is read again from the input, and
    the success its agent wrote meanwhile (read again as well, before or after it) ends it
    instead of a second run."""
    settings = with_state(topics, tmp_path / "state")
    register(settings, "a1", partition=0, epoch=1, capacity=2)
    no_checkpoint = [*CRASH, "--commit-interval-ms", "600000"]

    async def scenario() -> None:
        async with FakeAgent(settings, "a1", 2).beating():
            with taskd(settings, tmp_path / "first.log", "dispatcher", *no_checkpoint,
                       ready="dispatcher ready") as first:  # fmt: skip
                [task] = await submit(settings, 1)
                [(_, sent)] = await assignments(settings, 0, 1)
                _kill(first)
        await answer(settings, sent, TaskStatus.SUCCEEDED)  # the agent finished it meanwhile
        async with running_dispatcher(with_state(settings, tmp_path / "again")) as dispatcher:
            stats, clock = dispatcher.core.stats, dispatcher.clock
            await until(lambda: stats.summary(clock()).completed == 1, "it ended with its result")
            assert dispatcher.core.phase_of(task.task_id) is None
        assert [item.task.task_id for item in all_assignments(settings)] == [task.task_id]

    asyncio.run(scenario())


def test_an_agent_killed_mid_task_has_its_tasks_run_elsewhere(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    config = pipeline_config(suspect_after_ms=1_000, down_after_ms=2_000)
    agent_args = [
        "agent",
        "--id",
        "k1",
        "--capacity",
        "4",
        "--handler",
        DEMO,
        "--heartbeat-ms",
        "200",
    ]

    async def scenario() -> None:
        async with pipeline(settings, [2], config):
            with taskd(settings, tmp_path / "agent.log", *agent_args, ready="ready") as agent:
                sent = await asyncio.to_thread(submit_now, settings, 80, payload=work(150))
                await _until_count(settings, 4, agent_id="k1")
                _kill(agent)
            results = await until_results(settings, {task.task_id for task in sent})
        _no_loss(settings, {task.task_id for task in sent}, results)
        moved = [r for r in results if r.attempt > 0 and r.status is TaskStatus.SUCCEEDED]
        assert moved and all(r.agent_id == "a0" for r in moved)

    asyncio.run(scenario())


SESSION_S = 15
"""Long enough that waiting it out cannot pass for a quick takeover."""


@pytest.mark.parametrize("static", [True, False], ids=["with-instance-id", "without"])
def test_a_dispatcher_restarted_under_its_instance_id_resumes_within_seconds(
    topics: Settings, tmp_path: Path, static: bool
) -> None:
    """Static membership (``--instance-id``): the broker gives the restarted instance its
    shards back at once; without it, the restarted instance waits out the killed one's
    session. Each time is printed."""
    settings = with_state(topics, tmp_path / "state")
    options = [*CRASH, "--session-timeout-ms", str(SESSION_S * 1000)]
    if static:
        options += ["--instance-id", "d-static"]
    ready = "dispatcher ready"
    agents = [make_agent(settings, f"a{i}", capacity) for i, capacity in enumerate((2, 3, 4))]

    async def scenario() -> float:
        async with agents_running(agents):
            with taskd(settings, tmp_path / "first.log", "dispatcher", *options, ready=ready) as d:
                sent = await asyncio.to_thread(submit_now, settings, 600, payload=work(10))
                await _until_count(settings, 100)
                _kill(d)
                killed_ms = time.time() * 1000
            with taskd(settings, tmp_path / "second.log", "dispatcher", *options, ready=ready):
                results = await until_results(settings, {task.task_id for task in sent})
            _no_loss(settings, {task.task_id for task in sent}, results)
        stamps = [stamp for stamp, _ in read_stamped(settings, settings.topics.dispatch)]
        return (min(stamp for stamp in stamps if stamp > killed_ms) - killed_ms) / 1000

    resumed_s = asyncio.run(scenario())
    print(f"{'with' if static else 'without'} --instance-id: dispatching resumed {resumed_s:.1f} s")
    if static:
        assert resumed_s < SESSION_S / 2
    else:  # the session, less the heartbeat interval (a tenth of it) since the last heartbeat
        assert resumed_s >= SESSION_S * 0.9
