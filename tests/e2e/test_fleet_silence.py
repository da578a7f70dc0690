"""Every agent silent at once (``SIGSTOP`` on each agent process, longer than the down timeout,
then ``SIGCONT``), as a network fault between the agents and the broker would make them: the
dispatcher holds their tasks for them, nothing is requeued and nothing runs twice. A lone
agent's silence is its failure, as before (``tests/e2e/test_logs_cli.py``)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from streams.adapters.client import TaskClient
from streams.settings import Settings, child_environment
from streams.wire import TaskStatus
from tests.adapters.test_dispatcher_support import (
    running_dispatcher,
    until,
    until_read,
    with_state,
)
from tests.e2e.test_pipeline_support import all_results, pipeline_config, work

TASKD = Path(sys.executable).parent / "taskd"
DOWN_AFTER_MS = 3_000
SILENCE_S = 2.5 * DOWN_AFTER_MS / 1000
TASKS = 12
WORK_MS = 4_000
"""Long enough that every task is still running when the agents stop."""


@contextmanager
def _agent(settings: Settings, agent_id: str) -> Iterator[subprocess.Popen[bytes]]:
    args = ["agent", "--id", agent_id, "--capacity", "6", "--heartbeat-ms", "300"]
    process = subprocess.Popen(
        [str(TASKD), *args, "--handler", "streams.examples:work"],
        env=child_environment(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(timeout=60)


def test_the_whole_fleet_silent_longer_than_the_down_timeout_reruns_nothing(
    topics: Settings, tmp_path: Path
) -> None:
    settings = with_state(topics, tmp_path / "state")
    config = pipeline_config(
        heartbeat_interval_ms=300, suspect_after_ms=1_500, down_after_ms=DOWN_AFTER_MS
    )

    async def scenario() -> Counter[str]:
        async with running_dispatcher(settings, config) as dispatcher:
            with ExitStack() as agents:
                fleet = [agents.enter_context(_agent(settings, f"f{i}")) for i in range(2)]
                await until(lambda: len(dispatcher.core.agents()) == 2, "both agents joined")
                with TaskClient(settings) as client:
                    handles = [
                        client.submit_new(type="work", priority=1, payload=work(WORK_MS))
                        for _ in range(TASKS)
                    ]
                sent = {handle.task.task_id for handle in handles}
                await until(lambda: dispatcher.core.in_flight == TASKS, "every task running")
                for process in fleet:
                    process.send_signal(signal.SIGSTOP)
                await asyncio.sleep(SILENCE_S)
                held = dispatcher.core.in_flight
                for process in fleet:
                    process.send_signal(signal.SIGCONT)
                assert held == TASKS, f"{TASKS - held} task(s) taken from the silent fleet"
                await until_read(lambda: _done(settings) >= sent, "every task done", 60)
        return Counter(r.task_id for r in all_results(settings))

    runs = asyncio.run(scenario())
    assert len(runs) == TASKS and set(runs.values()) == {1}, runs  # each ran once
    results = all_results(settings)
    assert {r.status for r in results} == {TaskStatus.SUCCEEDED}
    assert {r.attempt for r in results} == {0}  # no requeue, no retry


def _done(settings: Settings) -> set[str]:
    return {r.task_id for r in all_results(settings) if r.status is TaskStatus.SUCCEEDED}
