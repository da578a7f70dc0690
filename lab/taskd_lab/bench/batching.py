"""Grouping for batch handlers, measured through the real pipeline: the same paced load of
``streams.examples:embed`` tasks (a batch handler: 20 ms a call plus 1 ms a task, at most 16
a call) runs through a dispatcher with grouping on, then off, on the broker, in one run.

Each run gets its own topic prefix, an in-process dispatcher and agents, and reads every
result back: the batch each task ran in (the handler's output says), the throughput (tasks
over the time from the first submission to the last result's end), the handler calls and the
wait of each task (from its submission to the start of its handler call: at the dispatcher
and in the agent's batcher; mean and p99).

    python -m taskd_lab.bench.batching --tasks 2000 --rate 400 --agents 8 --capacity 16

``--simulate scenarios/batching/grouping.toml`` runs the simulator's model of the same instead
(``streams.core.sim.batching``): no broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streams.adapters.admin import create_topics, delete_topics
from streams.adapters.client import TaskClient
from streams.adapters.dispatcher import Dispatcher, DispatcherConfig
from streams.adapters.kafka import codec_for, read_snapshot
from streams.core.sim.batching import run_batching, scenario_from_toml
from streams.settings import Settings, load_settings
from streams.wire import ResultBatch, TaskResult, TaskStatus
from streams.worker import Agent, AgentConfig

EMBED = "streams.examples:embed"
TASK_TYPE = "embed"
WAIT_S = 180.0
"""Upper bound of one run: it fails with a message past it."""


@dataclass(frozen=True, slots=True)
class BatchRun:
    """What one run measured."""

    grouping: bool
    tasks: int
    succeeded: int
    """Tasks with a SUCCEEDED result."""
    ran_twice: int
    """Tasks with more than one result."""
    calls: int
    """Handler calls: distinct calls the outputs name."""
    mean_batch: float
    batch_sizes: dict[int, int]
    """Batch size -> how many calls had it."""
    throughput_tps: float
    handler_ms_per_task: float
    """Time the handler's calls took (measured in the handler), summed, per task."""
    mean_wait_ms: float
    p99_wait_ms: float


@dataclass(frozen=True)
class Load:
    """The paced load and the fleet it runs on."""

    tasks: int = 960
    rate_per_s: float = 800.0
    agents: int = 4
    capacity: int = 16


def measure(settings: Settings, load: Load, *, grouping: bool) -> BatchRun:
    """Run ``load`` through a dispatcher (grouping on or off) and agents on ``settings``'
    topics (created beforehand) and read every result back."""
    return asyncio.run(_measure(settings, load, grouping))


async def _measure(settings: Settings, load: Load, grouping: bool) -> BatchRun:
    config = DispatcherConfig(
        web_enabled=False, heartbeat_interval_ms=200, aging_ms=None, group_batches=grouping
    )
    dispatcher = Dispatcher(settings, config)
    agents = [_agent(settings, f"embedder-{index}", load.capacity) for index in range(load.agents)]
    await dispatcher.start()
    runs: list[asyncio.Task[None]] = []
    try:
        for agent in agents:
            runs.append(asyncio.get_running_loop().create_task(agent.run()))
            await asyncio.wait_for(agent.wait_ready(), 60)
        await asyncio.sleep(1.0)  # every agent's heartbeat (and batch handler) heard
        started = time.time()
        ids = await asyncio.to_thread(_submit_paced, settings, load)
        results = await _until_done(settings, ids)
    finally:
        for agent in agents:
            agent.stop()
        await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)
        await dispatcher.stop()
    return _figures(results, ids, grouping, started)


def _agent(settings: Settings, agent_id: str, capacity: int) -> Agent:
    config = AgentConfig(
        agent_id=agent_id,
        capacity=capacity,
        heartbeat_interval_ms=200,
        handlers={TASK_TYPE: EMBED},
    )
    return Agent(config, settings)


def _submit_paced(settings: Settings, load: Load) -> dict[str, int]:
    """Submit ``load.tasks`` tasks at ``load.rate_per_s`` in slices of 10 ms (0: all at once,
    a burst); task id -> submitted at (ms)."""
    per_slice = max(1, round(load.rate_per_s / 100)) if load.rate_per_s else load.tasks
    ids: dict[str, int] = {}
    start = time.monotonic()
    with TaskClient(settings) as client:
        while len(ids) < load.tasks:
            for _ in range(min(per_slice, load.tasks - len(ids))):
                task = client.submit_new(type=TASK_TYPE, priority=1, payload=b"{}").task
                ids[task.task_id] = task.submitted_at
            client.flush()
            if load.rate_per_s:
                due = start + len(ids) / load.rate_per_s
                time.sleep(max(0.0, due - time.monotonic()))
    return ids


async def _until_done(settings: Settings, ids: dict[str, int]) -> list[TaskResult]:
    deadline = time.monotonic() + WAIT_S
    while True:
        results = await asyncio.to_thread(_results, settings)
        done = {result.task_id for result in results}
        if set(ids) <= done:
            return [result for result in results if result.task_id in ids]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(set(ids) - done)} task(s) without a result after {WAIT_S} s")
        await asyncio.sleep(0.5)


def _results(settings: Settings) -> list[TaskResult]:
    codec = codec_for(settings)
    batches = read_snapshot(
        settings,
        settings.topics.results,
        lambda message: codec.decode(message.value() or b"", ResultBatch),
        timeout_s=60,
    )
    return [result for batch in batches for result in batch.results]


def _figures(
    results: list[TaskResult], submitted: dict[str, int], grouping: bool, started: float
) -> BatchRun:
    """Calls are told apart by the call each output names (``streams.examples.embed``)."""
    calls: dict[str, tuple[int, float]] = {}
    waits: list[float] = []
    for result in results:
        output = json.loads(result.output or b"{}")
        call_ms = float(output["call_ms"])
        calls[output["call"]] = (int(output["batch"]), call_ms)
        # submitted to the start of its handler call: the dispatcher's and the batcher's wait
        waits.append(result.finished_at - call_ms - submitted[result.task_id])
    sizes: dict[int, int] = {}
    for size, _ in calls.values():
        sizes[size] = sizes.get(size, 0) + 1
    tasks = len(submitted)
    last_end_ms = max(result.finished_at for result in results)
    ran = Counter(result.task_id for result in results)
    return BatchRun(
        grouping=grouping,
        tasks=tasks,
        succeeded=len({r.task_id for r in results if r.status is TaskStatus.SUCCEEDED}),
        ran_twice=sum(1 for count in ran.values() if count > 1),
        calls=len(calls),
        mean_batch=round(statistics.fmean(size for size, _ in calls.values()), 2),
        batch_sizes=dict(sorted(sizes.items())),
        throughput_tps=round(tasks / max(0.001, last_end_ms / 1000 - started), 1),
        handler_ms_per_task=round(sum(ms for _, ms in calls.values()) / tasks, 2),
        mean_wait_ms=round(statistics.fmean(waits), 1),
        p99_wait_ms=round(_quantile(waits, 0.99), 1),
    )


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def side_by_side(bootstrap_servers: str, load: Load) -> list[BatchRun]:
    """The load with grouping on, then off, each on topics of its own (deleted after)."""
    runs = []
    for grouping in (True, False):
        settings = load_settings(
            bootstrap_servers=bootstrap_servers,
            topic_prefix=f"batching-{uuid.uuid4().hex[:8]}.",
            shards=2,
            dispatch_partitions=8,
            agent_metrics_port=0,
        )
        create_topics(settings)
        try:
            runs.append(measure(settings, load, grouping=grouping))
        finally:
            delete_topics(settings)
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--tasks", type=int, default=Load.tasks)
    parser.add_argument("--rate", type=float, default=Load.rate_per_s, help="tasks/s; 0: burst")
    parser.add_argument("--agents", type=int, default=Load.agents)
    parser.add_argument("--capacity", type=int, default=Load.capacity)
    parser.add_argument("--simulate", metavar="SCENARIO", help="a batching scenario (TOML)")
    args = parser.parse_args(argv)
    if args.simulate:
        scenario = scenario_from_toml(Path(args.simulate).read_text())
        figures = [asdict(run) for run in run_batching(scenario)]
        print(json.dumps({"scenario": asdict(scenario), "runs": figures}, indent=2))
        return
    load = Load(args.tasks, args.rate, args.agents, args.capacity)
    report: list[dict[str, Any]] = [
        asdict(run) for run in side_by_side(args.bootstrap_servers, load)
    ]
    print(json.dumps({"load": asdict(load), "runs": report}, indent=2))


if __name__ == "__main__":
    main()
