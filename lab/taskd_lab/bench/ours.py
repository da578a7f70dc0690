"""Our pipeline under measurement: ``taskd dispatcher`` and ``taskd agent`` child processes as an
operator runs them, the :class:`~streams.client.TaskClient` that submits in this process, and
the observer that reads ``dispatch`` and ``results``.

Each task has three end points, all on this process's ``time.monotonic()``:

- *dispatched*: its assignment record seen on ``dispatch``;
- *done*: the result's ``finished_at``, when the agent finished it (the agent's wall clock on
  this machine, whole milliseconds, moved onto the monotonic clock): the peers' end point;
- *seen*: its result record seen on ``results`` by the observer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Message

from streams.adapters.admin import create_topics, delete_groups, delete_topics
from streams.adapters.client import TaskClient
from streams.settings import Settings, child_environment
from streams.wire import AssignmentBatch, Codec, ResultBatch, Task, TaskStatus
from taskd_lab.bench.cost import CostMeter
from taskd_lab.bench.measure import Observer
from taskd_lab.bench.plan import (
    DEMO_HANDLER,
    PAYLOAD,
    PRIORITY,
    TASK_TYPE,
    BenchPlan,
    section_settings,
)
from taskd_lab.bench.procs import RssSampler
from taskd_lab.procs import Child, Children, taskd_command

READY_S = 90.0
AGENT_READY = " ready: partition"
"""What an agent's log says once it has claimed its partition."""
HALF_MS_S = 0.0005
"""``finished_at`` is truncated to the millisecond: half of one puts it mid-way."""


def bench_task(task_id: str) -> Task:
    """The benchmark's no-op task, submitted now."""
    return Task(
        task_id=task_id,
        type=TASK_TYPE,
        priority=PRIORITY,
        payload=PAYLOAD,
        submitted_at=time.time_ns() // 1_000_000,
    )


def start_dispatcher(
    children: Children,
    *,
    max_held: int | None = None,
    strategy: str | None = None,
    events: bool = False,
    name: str = "dispatcher",
    extra: Sequence[str] = (),
) -> Child:
    """``taskd dispatcher`` as a child (lifecycle events only with ``events``; ``extra``: more
    options); returns once it says it is ready. Only the one named ``dispatcher`` serves the
    HTTP views (the section's port); others of the same group (``name``) serve none."""
    argv = [*taskd_command(), "dispatcher", "--loglevel", "info", "--lease-ms", "120000", *extra]
    if name != "dispatcher":
        argv.append("--no-web")
    if max_held is not None:
        argv += ["--max-held", str(max_held)]
    if strategy is not None:
        argv += ["--strategy", strategy]
    if events:
        argv.append("--events")
    dispatcher = children.start(name, argv)
    dispatcher.wait_for_log("dispatcher ready", READY_S)
    return dispatcher


def agent_id(index: int) -> str:
    """The id of the ``index``-th agent: its name in the results and in the CPU figures."""
    return f"bench-a{index}"


def start_agents(children: Children, count: int, capacity: int) -> list[Child]:
    """``count`` agents ``bench-a<i>`` running the demo handler; once each has its partition."""
    agents = [children.start(f"agent-{i}", agent_argv(i, capacity)) for i in range(count)]
    for agent in agents:
        agent.wait_for_log(AGENT_READY, READY_S)
    return agents


def agent_argv(index: int, capacity: int) -> list[str]:
    """The command of agent ``bench-a<index>``."""
    return [
        *taskd_command(),
        "agent",
        *("--id", agent_id(index), "--capacity", str(capacity)),
        *("--handler", DEMO_HANDLER, "--heartbeat-ms", "500"),
    ]


@dataclass(frozen=True, slots=True)
class Ends:
    """When each task of a run reached each end point (see the module docstring)."""

    dispatched: dict[str, float]
    done: dict[str, float]
    seen: dict[str, float]


@dataclass(frozen=True, slots=True)
class _Result:
    """What the benchmark keeps of a task's first result."""

    agent_id: str
    finished_at_ms: int
    ok: bool


class PipelineRun:
    """The client and the observer of one pipeline, and the first result of each task."""

    def __init__(self, settings: Settings, plan: BenchPlan, *, observe: bool = True) -> None:
        self.plan = plan
        self.settings = settings
        self.codec = Codec()
        self.topics = settings.topics
        self.results: dict[str, _Result] = {}
        self.client = TaskClient(settings)
        watched = (self.topics.dispatch, self.topics.results) if observe else ()
        self.observer = Observer(settings, watched, keys_of=self._read)

    def __enter__(self) -> PipelineRun:
        self.observer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.client.close(10)
        finally:
            self.observer.__exit__(*exc)

    def _read(self, message: Message) -> list[str]:
        """The task ids of a record; a result record's results are kept, the first of each."""
        value = message.value() or b""
        if message.topic() != self.topics.results:
            return [a.task.task_id for a in self.codec.decode(value, AssignmentBatch).assignments]
        results = self.codec.decode(value, ResultBatch).results
        for r in results:
            ok = r.status is TaskStatus.SUCCEEDED
            self.results.setdefault(r.task_id, _Result(r.agent_id, r.finished_at, ok))
        return [r.task_id for r in results]

    def send(self, task_id: str) -> None:
        self.client.submit(bench_task(task_id))

    def flush(self) -> None:
        self.client.flush(self.plan.timeout_s)

    def seen_count(self, ids: Iterable[str]) -> int:
        """How many of ``ids`` have had their result seen so far."""
        return len(self.observer.arrived(self.topics.results, ids))

    def done(self, ids: list[str]) -> Ends:
        """Every end point of ``ids``, once every one has a result (BenchError past the plan's
        timeout)."""
        seen = self.observer.wait_for(self.topics.results, set(ids), self.plan.timeout_s)
        dispatched = self.observer.arrived(self.topics.dispatch, ids)
        offset = time.time() - time.monotonic()  # now, not once: the wall clock may be slewed
        done = {key: self.results[key].finished_at_ms / 1000 + HALF_MS_S - offset for key in ids}
        return Ends(dispatched=dispatched, done=done, seen=seen)

    def failed(self) -> int:
        """Results, of every run so far, that are not a success."""
        return sum(1 for result in list(self.results.values()) if not result.ok)

    def by_agent(self, times: Mapping[str, float]) -> dict[str, list[float]]:
        """``times`` (one per task, such as an end point of :class:`Ends`) grouped by the agent
        that ran each task (its first result)."""
        grouped: dict[str, list[float]] = {}
        for key, at in times.items():
            grouped.setdefault(self.results[key].agent_id, []).append(at)
        return grouped

    def ran_by(self, ids: Iterable[str]) -> Counter[str]:
        """How many of ``ids`` each agent ran (by its first result)."""
        return Counter(self.results[key].agent_id for key in ids)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A running pipeline: its run, what measures its cost, and its memory sampler."""

    run: PipelineRun
    cost: CostMeter
    rss: RssSampler
    agents: list[str]
    dispatchers: list[str]


def dispatcher_names(count: int) -> list[str]:
    """The names of ``count`` dispatcher instances of one group, in the CPU figures."""
    return ["dispatcher", *(f"dispatcher-{index}" for index in range(2, count + 1))]


@contextmanager
def running_pipeline(
    plan: BenchPlan,
    section: str,
    *,
    events: bool = False,
    dispatchers: int = 1,
    observe: bool = True,
) -> Iterator[Pipeline]:
    """Topics of its own, ``dispatchers`` dispatcher instances of one group, ``plan.agents``
    agents and the measuring around them (without ``observe``, no reading of ``dispatch``
    and ``results`` in this process); everything stopped and the topics deleted on the way
    out."""
    settings = section_settings(plan, section)
    create_topics(settings)
    try:
        with Children(settings.data_dir.parent / "logs", child_environment(settings)) as children:
            pids = {
                name: start_dispatcher(children, events=events, name=name).pid
                for name in dispatcher_names(dispatchers)
            }
            agents = start_agents(children, plan.agents, plan.capacity)
            pids |= {agent_id(i): agent.pid for i, agent in enumerate(agents)}
            ids = [agent_id(i) for i in range(len(agents))]
            with (
                RssSampler(pids) as rss,
                CostMeter(settings, pids) as cost,
                PipelineRun(settings, plan, observe=observe) as run,
            ):
                names = dispatcher_names(dispatchers)
                yield Pipeline(run=run, cost=cost, rss=rss, agents=ids, dispatchers=names)
            children.check_alive()
    finally:
        delete_topics(settings)
        delete_groups(settings)  # the run's consumer groups too
