"""Chaos under load: the dispatcher killed with SIGKILL again and again, an agent once, while
tasks flow; then every result is counted.

    python -m taskd_lab.chaos --tasks 20000 --rate 500 --kills 3 --runs 4 --out out/chaos

Each run starts the bench's pipeline (``taskd dispatcher`` and ``plan.agents`` ``taskd agent``
child processes, tasks of ``--work-ms`` each), sends ``--tasks`` tasks at ``--rate``, and while
they flow kills the dispatcher ``--kills`` times, evenly spread (each new one dispatching for
RUN_BETWEEN_KILLS_S at least), starting a new one at once (with ``--instance-id``, as
docs/operations.md advises, unless ``--no-instance-id``), and one agent half-way, restarted
under its id. Once every task has a success, it reads the whole
``results`` topic and reports, per run:

- *lost*: tasks with no success;
- *ran twice*: tasks with more than one run ending (any status but REJECTED, which runs nothing);
- *resumed*: after each dispatcher kill, seconds until the next assignment was written (NaN
  when nothing was left to dispatch).

It writes ``chaos.json`` into ``--out``; the exit status is 0 when nothing was lost.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from streams.adapters.admin import create_topics, delete_groups, delete_topics
from streams.adapters.kafka import codec_for, read_snapshot
from streams.settings import Settings, child_environment, load_settings
from streams.wire import ResultBatch, Task, TaskStatus
from taskd_lab.bench.measure import paced, run_ids
from taskd_lab.bench.ours import (
    AGENT_READY,
    READY_S,
    PipelineRun,
    agent_argv,
    bench_task,
    start_agents,
    start_dispatcher,
)
from taskd_lab.bench.plan import BenchPlan, section_settings
from taskd_lab.procs import Child, Children

Progress = Callable[[str], None]
Run = tuple[str, int, float]
"""One run of a task, as its result says: agent, attempt, finished at (s since the epoch)."""
INSTANCE_ID = "chaos-dispatcher"
RUN_BETWEEN_KILLS_S = 3.0
"""A restarted dispatcher dispatches at least this long before it is killed again."""


def run_chaos(
    plan: BenchPlan,
    *,
    tasks: int,
    rate: float,
    kills: int,
    work_ms: int,
    static: bool,
    progress: Progress,
) -> dict[str, Any]:
    """One run (module docstring); the report."""
    settings = section_settings(plan, "chaos")
    create_topics(settings)
    extra = ["--instance-id", INSTANCE_ID] if static else []
    try:
        logs = settings.data_dir.parent / "logs"
        with Children(logs, child_environment(settings)) as children:
            dispatcher = start_dispatcher(children, extra=extra)
            agents = start_agents(children, plan.agents, plan.capacity)
            with PipelineRun(settings, plan, observe=False) as run:
                ids = run_ids(tasks, "chaos")
                payload = json.dumps({"work_ms": work_ms}).encode()
                sender = threading.Thread(
                    target=paced,
                    args=(lambda key: run.client.submit(_task(key, payload)), run.flush, ids, rate),
                    daemon=True,
                )
                sender.start()
                killed_at = _kill_along(
                    children, dispatcher, agents, tasks / rate, kills, extra, plan.capacity
                )
                sender.join()
                progress(f"{tasks:,} sent; {len(killed_at)} dispatcher kills; waiting for results")
                runs, succeeded = _wait_for_successes(settings, set(ids), plan.timeout_s)
            children.check_alive()
        return _report(settings, ids, runs, succeeded, killed_at)
    finally:
        delete_topics(settings)
        delete_groups(settings)


def _task(key: str, payload: bytes) -> Task:
    """The bench's task, doing ``payload``'s work."""
    return dataclasses.replace(bench_task(key), payload=payload)


def _kill_along(
    children: Children,
    dispatcher: Child,
    agents: list[Child],
    sending_s: float,
    kills: int,
    extra: list[str],
    capacity: int,
) -> list[float]:
    """Kill the dispatcher ``kills`` times over the sending time (each replaced at once), and
    the first agent once, half-way; the wall-clock time (s) of each dispatcher kill."""
    started = ready = time.monotonic()
    killed_at: list[float] = []
    agent_due = sending_s / 2
    agent_killed = False
    for number in range(1, kills + 1):
        due = max(started + sending_s * number / (kills + 1), ready + RUN_BETWEEN_KILLS_S)
        while time.monotonic() < due:
            if not agent_killed and time.monotonic() - started >= agent_due:
                _restart_agent(children, agents[0], capacity)
                agent_killed = True
            time.sleep(0.05)
        dispatcher.kill()
        dispatcher.process.wait(10)
        killed_at.append(time.time())
        dispatcher = start_dispatcher(children, extra=extra)
        ready = time.monotonic()
    if not agent_killed:
        _restart_agent(children, agents[0], capacity)
    return killed_at


def _restart_agent(children: Children, agent: Child, capacity: int) -> None:
    """SIGKILL the first agent and start it again under its id."""
    agent.kill()
    agent.process.wait(10)
    restarted = children.start(f"{agent.name}-again", agent_argv(0, capacity))
    restarted.wait_for_log(AGENT_READY, READY_S)


def _wait_for_successes(
    settings: Settings, ids: set[str], timeout_s: float
) -> tuple[dict[str, list[Run]], set[str]]:
    """Runs per task (each result that is not REJECTED: agent, attempt, finished at) and the
    tasks that succeeded, once every one of ``ids`` has succeeded or nothing new arrived for
    ``timeout_s``."""
    codec = codec_for(settings)

    def results(message: Message) -> ResultBatch:
        return codec.decode(message.value() or b"", ResultBatch)

    last_change = time.monotonic()
    seen = -1
    while True:
        runs: dict[str, list[Run]] = defaultdict(list)
        succeeded: set[str] = set()
        for batch in read_snapshot(settings, settings.topics.results, results, timeout_s=60):
            for result in batch.results:
                if result.status is not TaskStatus.REJECTED:
                    run = (result.agent_id, result.attempt, result.finished_at / 1000)
                    runs[result.task_id].append(run)
                if result.status is TaskStatus.SUCCEEDED:
                    succeeded.add(result.task_id)
        if ids <= succeeded:
            return runs, succeeded
        if len(succeeded) != seen:
            seen, last_change = len(succeeded), time.monotonic()
        elif time.monotonic() - last_change > timeout_s:
            return runs, succeeded
        time.sleep(1.0)


def _report(
    settings: Settings,
    ids: list[str],
    runs: dict[str, list[Run]],
    succeeded: set[str],
    killed_at: list[float],
) -> dict[str, Any]:
    stamps = sorted(
        read_snapshot(
            settings, settings.topics.dispatch, lambda m: m.timestamp()[1] / 1000, timeout_s=60
        )
    )
    resumed = [
        min((stamp for stamp in stamps if stamp > kill), default=float("nan")) - kill
        for kill in killed_at
    ]
    twice = sorted(task for task in ids if len(runs.get(task, ())) > 1)
    return {
        "tasks": len(ids),
        "lost": len(set(ids) - succeeded),
        "ran_twice": len(twice),
        "ran_twice_runs": {task: runs[task] for task in twice[:20]},
        "killed_at": killed_at,
        "resumed_s": [round(seconds, 2) for seconds in resumed],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskd_lab.chaos", description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0, help="tasks per second")
    parser.add_argument("--kills", type=int, default=3, help="dispatcher kills per run")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work-ms", type=int, default=20, help="each task's work")
    parser.add_argument("--no-instance-id", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("out/chaos"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = BenchPlan(work_dir=args.out / "work", base=load_settings())
    reports = []
    for number in range(1, args.runs + 1):
        report = run_chaos(
            plan,
            tasks=args.tasks,
            rate=args.rate,
            kills=args.kills,
            work_ms=args.work_ms,
            static=not args.no_instance_id,
            progress=print,
        )
        reports.append(report)
        print(
            f"run {number}: {report['tasks']:,} tasks, {report['lost']} lost, "
            f"{report['ran_twice']} ran twice, resumed after each kill in "
            + ", ".join(f"{s:.1f}" for s in report["resumed_s"])
            + " s"
        )
    (args.out / "chaos.json").write_text(json.dumps(reports, indent=2))
    return 0 if all(report["lost"] == 0 for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
