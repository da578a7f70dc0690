"""Preemption through the pipeline, as a user checks it on the results and replies topics: one
agent with one slot runs a long p3 task; a p0 task arrives. With preemption on (p0 after 1 s,
p3 preemptible), the p3 run is stopped (its handler sees ``taskd.cancelled()``), the p0 task
runs in its slot, and the p3 task runs again from its start and succeeds once, its attempt not
counted. With preemption off, the p0 task waits for the p3 run to end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import taskd
from streams.adapters.client import TaskClient
from streams.settings import Settings
from streams.wire import PREEMPTED, OutcomeStatus, Task, TaskOutcome, TaskResult, TaskStatus
from streams.worker import Agent, AgentConfig
from tests.adapters.test_dispatcher_support import running_dispatcher, until, with_state
from tests.e2e.test_pipeline_support import (
    agents_running,
    all_results,
    pipeline,
    pipeline_config,
)

HANDLER = "tests.e2e.test_preempt:long_unless_urgent"
LOW_RUN_S = 8.0
"""How long the p3 task runs when nothing stops it."""
AFTER_MS = 1_000
MARGIN_MS = 4_000
"""For the dispatcher's loop, the stop's round trip and a busy machine; well below the run."""
WAIT_S = 90


def long_unless_urgent(task: Task) -> str:
    """A p0 task ends at once; any other runs ``LOW_RUN_S``, polling its cancellation."""
    return _unless_urgent(task, LOW_RUN_S)


def longer_unless_urgent(task: Task) -> str:
    """As ``long_unless_urgent``, for twice as long: room for a dispatcher's restart."""
    return _unless_urgent(task, 2 * LOW_RUN_S)


def _unless_urgent(task: Task, run_s: float) -> str:
    if task.priority == 0:
        return "urgent done"
    deadline = time.monotonic() + run_s
    while time.monotonic() < deadline:
        if taskd.cancelled():
            return "stopped early"
        time.sleep(0.05)
    return "low done"


def _run(
    settings: Settings, preempt: bool
) -> tuple[str, str, int, list[TaskResult], dict[str, TaskOutcome]]:
    """(low task id, urgent task id, when the urgent one was submitted, every result, the
    outcomes) of one run of the scenario."""
    fields = {"preempt_after_ms": {0: AFTER_MS}, "preemptible_levels": (3,)} if preempt else {}
    config = pipeline_config(**fields)

    async def scenario() -> tuple[str, str, int, dict[str, TaskOutcome]]:
        async with pipeline(settings, [1], config, handlers=[HANDLER]) as (dispatcher, _, _):
            with TaskClient(settings, results=True) as client:
                low = client.submit_new(type="work", priority=3)
                await until(lambda: dispatcher.core.in_flight == 1, "the slot taken", WAIT_S)
                await asyncio.sleep(0.5)  # the p3 run has started
                submitted_ms = time.time_ns() // 1_000_000
                urgent = client.submit_new(type="work", priority=0)
                outcomes = await asyncio.to_thread(client.wait, [low, urgent], WAIT_S)
            preempted = dispatcher.registry.get_sample_value(
                "taskd_runs_preempted_total", {"priority": "p3"}
            )
            assert (preempted or 0) == (1 if preempt else 0)  # what /metrics shows
        by_id = {outcome.task_id: outcome for outcome in outcomes}
        return low.task_id, urgent.task_id, submitted_ms, by_id

    low_id, urgent_id, submitted_ms, outcomes = asyncio.run(scenario())
    return low_id, urgent_id, submitted_ms, all_results(settings), outcomes


def test_an_urgent_task_preempts_a_long_low_priority_run(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")
    low, urgent, submitted_ms, results, outcomes = _run(settings, preempt=True)
    low_runs = sorted((r for r in results if r.task_id == low), key=lambda r: r.started_at)
    (urgent_run,) = [r for r in results if r.task_id == urgent]
    stopped, again = low_runs  # two runs: stopped for the p0 task, then to its end
    assert (stopped.status, stopped.error, stopped.attempt) == (
        TaskStatus.CANCELLED,
        PREEMPTED,
        0,
    )
    assert (again.status, again.attempt) == (TaskStatus.SUCCEEDED, 0)  # no attempt spent
    assert urgent_run.status is TaskStatus.SUCCEEDED
    print(f"with preemption: the p0 task waited {urgent_run.started_at - submitted_ms} ms")
    assert urgent_run.started_at - submitted_ms < AFTER_MS + MARGIN_MS
    assert stopped.finished_at <= urgent_run.started_at <= again.started_at  # in its slot
    assert outcomes[low].status is OutcomeStatus.SUCCEEDED and outcomes[low].attempts == 1
    assert outcomes[urgent].status is OutcomeStatus.SUCCEEDED


def test_a_run_still_waiting_at_its_agent_is_preempted_at_once(
    topics: Settings, tmp_path: Path
) -> None:
    """With prefetch places (here one beside the two slots) the youngest run may still wait at
    its agent: its stop answers at once, and the p0 task takes its place there, to start when
    one of the agent's slots frees, before the stopped task runs again (docs/results.md,
    Preempting)."""
    settings = with_state(topics, tmp_path / "state")
    fields = {
        "preempt_after_ms": {0: AFTER_MS},
        "preemptible_levels": (3,),
        "prefetch_share": 0.5,
    }

    async def scenario() -> tuple[list[str], str, str]:
        config = pipeline_config(**fields)
        async with pipeline(settings, [2], config, handlers=[HANDLER]) as (dispatcher, _, _):
            with TaskClient(settings, results=True) as client:
                running = [client.submit_new(type="work", priority=3) for _ in range(2)]
                await until(lambda: dispatcher.core.in_flight == 2, "the slots taken", WAIT_S)
                await asyncio.sleep(0.5)  # both started
                waiting = client.submit_new(type="work", priority=3)
                await until(lambda: dispatcher.core.in_flight == 3, "one prefetched", WAIT_S)
                urgent = client.submit_new(type="work", priority=0)
                handles = [*running, waiting, urgent]
                outcomes = await asyncio.to_thread(client.wait, handles, WAIT_S)
        assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
        return [handle.task_id for handle in running], waiting.task_id, urgent.task_id

    running, waiting, urgent = asyncio.run(scenario())
    results = all_results(settings)
    ran = [r for r in results if r.task_id in running]
    (urgent_run,) = [r for r in results if r.task_id == urgent]
    stopped, again = sorted((r for r in results if r.task_id == waiting), key=_started)
    assert (stopped.status, stopped.error, stopped.attempt) == (TaskStatus.CANCELLED, PREEMPTED, 0)
    first_end = min(r.finished_at for r in ran)
    assert stopped.finished_at < first_end  # answered at once, not when a slot freed
    assert [r.status for r in ran] == [TaskStatus.SUCCEEDED] * 2  # the runs were not stopped
    assert first_end <= urgent_run.started_at <= again.started_at
    assert (again.status, again.attempt) == (TaskStatus.SUCCEEDED, 0)


def _started(result: TaskResult) -> int:
    return result.started_at


def test_without_preemption_the_urgent_task_waits(topics: Settings, tmp_path: Path) -> None:
    settings = with_state(topics, tmp_path / "state")
    low, urgent, submitted_ms, results, outcomes = _run(settings, preempt=False)
    (low_run,) = [r for r in results if r.task_id == low]
    (urgent_run,) = [r for r in results if r.task_id == urgent]
    assert low_run.status is TaskStatus.SUCCEEDED
    print(f"without preemption: the p0 task waited {urgent_run.started_at - submitted_ms} ms")
    assert urgent_run.started_at >= low_run.finished_at  # it waited for the whole run
    assert urgent_run.started_at - submitted_ms >= AFTER_MS + MARGIN_MS
    assert {o.status for o in outcomes.values()} == {OutcomeStatus.SUCCEEDED}


def test_a_task_preempted_once_is_not_preempted_again_after_a_dispatcher_restart(
    topics: Settings, tmp_path: Path
) -> None:
    """``preempt_max_per_task`` 1: the p3 task is stopped once for a p0 task and runs again;
    the dispatcher restarts while it runs; a second p0 task then waits for the run's end
    instead of stopping it again (the count is in the dispatcher's state changelog)."""
    settings = with_state(topics, tmp_path / "state")
    fields = {"preempt_after_ms": {0: AFTER_MS}, "preemptible_levels": (3,)}
    config = pipeline_config(**fields, preempt_max_per_task=1)
    handler = "tests.e2e.test_preempt:longer_unless_urgent"
    agent = Agent(
        AgentConfig(agent_id="a0", capacity=1, handler=handler, heartbeat_interval_ms=200),
        settings,
    )

    async def scenario() -> tuple[str, str, int, int]:
        async with agents_running([agent]):
            with TaskClient(settings, results=True) as client:
                async with running_dispatcher(settings, config) as dispatcher:
                    low = client.submit_new(type="work", priority=3)
                    await until(lambda: dispatcher.core.in_flight == 1, "the slot taken", WAIT_S)
                    await asyncio.sleep(0.5)  # the p3 run has started
                    first = client.submit_new(type="work", priority=0)
                    await asyncio.to_thread(client.wait, [first], WAIT_S)
                    await until(lambda: dispatcher.core.in_flight == 1, "run again", WAIT_S)
                async with running_dispatcher(settings, config):
                    restarted_ms = time.time_ns() // 1_000_000
                    second = client.submit_new(type="work", priority=0)
                    submitted_ms = time.time_ns() // 1_000_000
                    handles = [low, first, second]
                    outcomes = await asyncio.to_thread(client.wait, handles, WAIT_S)
        assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
        return low.task_id, second.task_id, restarted_ms, submitted_ms

    low, second, restarted_ms, submitted_ms = asyncio.run(scenario())
    results = all_results(settings)
    stopped, again = sorted((r for r in results if r.task_id == low), key=_started)
    (second_run,) = [r for r in results if r.task_id == second]
    assert (stopped.status, stopped.error) == (TaskStatus.CANCELLED, PREEMPTED)
    assert again.started_at < restarted_ms  # the run went on across the restart
    assert submitted_ms + AFTER_MS + MARGIN_MS < again.finished_at  # overdue long before its end
    assert again.status is TaskStatus.SUCCEEDED  # not stopped a second time
    assert second_run.started_at >= again.finished_at  # the p0 task waited for it
