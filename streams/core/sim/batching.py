"""Batch handlers in the simulator: grouping on and off, on one seeded load, through the core.

The dispatcher is the real :class:`~streams.core.distributor.Distributor`; each agent models a
batch handler: every task delivered holds one of its slots and joins its batcher, which hands
a call the tasks it holds when ``max_size`` wait or the first has waited ``max_wait_ms`` (the
real ``Batcher``); a call of ``n`` tasks takes ``call_ms + n * task_ms`` and ends them all.
Tasks arrive as a Poisson process at ``rate_per_s``. Figures: throughput (tasks over the time
from the first arrival to the last end), handler calls and their mean size, the handler's busy
ms per task, and each task's wait from arrival to the start of its call (mean, p99).

A scenario (TOML, ``scenarios/batching/grouping.toml``)::

    name = "batching"
    seed = 7
    tasks = 4000
    rates_per_s = [400, 4000]       # one run per rate, each with grouping on and off
    group_max_wait_ms = 50          # the dispatcher's bound ([dispatcher] group_max_wait_ms)
    [agents]
    count = 8
    capacity = 16
    [handler]
    max_size = 16
    max_wait_ms = 50
    call_ms = 20
    task_ms = 1

Pure: time is simulated, randomness seeded; nothing here reads a clock or a file.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from streams.core.actions import Dispatch, ResultStatus
from streams.core.agents import HealthConfig, Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import Event, HeartbeatReceived, ResultReported, TaskArrived
from streams.core.grouping import BatchHandler, GroupingConfig
from streams.core.model import Job
from streams.core.routing import RoutingConfig
from streams.core.scheduling import SchedulerConfig
from streams.core.sim.fields import Fields, load_toml

TASK_TYPE = "embed"
_HEARTBEAT_MS = 1_000


@dataclass(frozen=True, slots=True)
class BatchScenario:
    """A load of one batch type on a fleet of agents with its batch handler."""

    name: str = "batching"
    seed: int = 7
    tasks: int = 4_000
    rates_per_s: tuple[float, ...] = (400.0,)
    group_max_wait_ms: int = 50
    agents: int = 8
    capacity: int = 16
    max_size: int = 16
    max_wait_ms: int = 50
    call_ms: float = 20.0
    task_ms: float = 1.0


@dataclass(frozen=True, slots=True)
class BatchFigures:
    """One run of a scenario at one rate, grouping on or off."""

    rate_per_s: float
    grouping: bool
    tasks: int
    calls: int
    mean_batch: float
    throughput_tps: float
    handler_ms_per_task: float
    mean_wait_ms: float
    p99_wait_ms: float


def scenario_from_toml(text: str) -> BatchScenario:
    """Parse and validate a batching scenario written in TOML (see the module docstring)."""
    return parse_batch_scenario(load_toml(text))


def parse_batch_scenario(data: Mapping[str, object]) -> BatchScenario:
    top = Fields(data, "")
    agents = top.sub("agents")
    handler = top.sub("handler")
    scenario = BatchScenario(
        name=top.str_("name", "batching"),
        seed=top.int_("seed", 7),
        tasks=top.int_("tasks", 4_000, minimum=1),
        rates_per_s=tuple(float(rate) for rate in top.int_list("rates_per_s", [400])),
        group_max_wait_ms=top.int_("group_max_wait_ms", 50),
        agents=agents.int_("count", 8, minimum=1),
        capacity=agents.int_("capacity", 16, minimum=1),
        max_size=handler.int_("max_size", 16, minimum=1),
        max_wait_ms=handler.int_("max_wait_ms", 50),
        call_ms=handler.float_("call_ms", 20.0),
        task_ms=handler.float_("task_ms", 1.0),
    )
    top.done()
    agents.done()
    handler.done()
    return scenario


def run_batching(scenario: BatchScenario) -> list[BatchFigures]:
    """Every rate of ``scenario``, grouping on then off, on the same arrivals."""
    return [
        _Run(scenario, rate, grouping).figures()
        for rate in scenario.rates_per_s
        for grouping in (True, False)
    ]


@dataclass(slots=True)
class _Agent:
    agent_id: str
    waiting: list[str] = field(default_factory=list)
    timer: int = 0
    """Number of the batcher's pending flush timer (0: none): a stale timer is ignored."""


class _Run:
    """One simulation: events on a heap of (ms, seq, kind, payload)."""

    def __init__(self, scenario: BatchScenario, rate_per_s: float, grouping: bool) -> None:
        self._scenario = scenario
        self._rate = rate_per_s
        self._grouping = grouping
        config = DistributorConfig(
            scheduler=SchedulerConfig(aging_ms=None),
            routing=RoutingConfig(strategy="least-connections"),
            health=HealthConfig(heartbeat_interval_ms=_HEARTBEAT_MS),
            grouping=GroupingConfig(enabled=grouping, max_wait_ms=scenario.group_max_wait_ms),
        )
        self._core = Distributor(config)
        self._agents = {f"a{i}": _Agent(f"a{i}") for i in range(scenario.agents)}
        self._events: list[tuple[int, int, str, object]] = []
        self._seq = 0
        self._arrived: dict[str, int] = {}
        self._waits: list[int] = []
        self._calls: list[int] = []
        self._handler_ms = 0.0
        self._last_end_ms = 0
        self._timers = 0

    def figures(self) -> BatchFigures:
        self._schedule_arrivals()
        for agent_id in self._agents:
            self._push(0, "beat", agent_id)
        while self._events:
            now_ms, _, kind, payload = heapq.heappop(self._events)
            self._step(now_ms, kind, payload)
        return self._summary()

    def _schedule_arrivals(self) -> None:
        draw = random.Random(self._scenario.seed)
        at_ms = 1_000.0  # after the agents' first heartbeats
        for index in range(self._scenario.tasks):
            at_ms += draw.expovariate(self._rate / 1000)
            self._push(int(at_ms), "arrive", f"t{index}")

    def _push(self, at_ms: int, kind: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at_ms, self._seq, kind, payload))

    def _step(self, now_ms: int, kind: str, payload: object) -> None:
        events: list[Event] = []
        if kind == "arrive":
            assert isinstance(payload, str)
            self._arrived[payload] = now_ms
            events.append(TaskArrived(Job(payload, 1, now_ms, task_type=TASK_TYPE)))
        elif kind == "beat":
            assert isinstance(payload, str)
            events.append(HeartbeatReceived(self._heartbeat(payload, now_ms)))
            if len(self._waits) < self._scenario.tasks:
                self._push(now_ms + _HEARTBEAT_MS, "beat", payload)
        elif kind == "flush":
            assert isinstance(payload, tuple)
            self._flush(self._agents[payload[0]], payload[1], now_ms)
        elif kind == "end":
            assert isinstance(payload, tuple)
            agent_id, tasks = payload
            self._last_end_ms = max(self._last_end_ms, now_ms)
            events += [ResultReported(t, agent_id, 0, ResultStatus.SUCCEEDED) for t in tasks]
        self._handle(events, now_ms)

    def _handle(self, events: list[Event], now_ms: int) -> None:
        grouped: set[str] = set()
        for action in self._core.handle(events, now_ms):
            if isinstance(action, Dispatch):
                self._deliver(self._agents[action.agent_id], action.job.task_id, now_ms)
                if action.grouped:
                    grouped.add(action.agent_id)
        for agent_id in sorted(grouped):  # as the real agent: a group goes to the handler at once
            agent = self._agents[agent_id]
            self._flush(agent, agent.timer, now_ms)
        wake_ms = self._core.next_wakeup_ms(now_ms)
        if wake_ms is not None and wake_ms > now_ms and self._core.held:
            self._push(wake_ms, "tick", None)

    def _heartbeat(self, agent_id: str, now_ms: int) -> Heartbeat:
        scenario = self._scenario
        handler = BatchHandler(TASK_TYPE, scenario.max_size, scenario.max_wait_ms)
        return Heartbeat(agent_id, scenario.capacity, frozenset(), None, 1.0, 0.0, "READY",
                         now_ms, 1, frozenset({TASK_TYPE}), batch_handlers=(handler,))  # fmt: skip

    def _deliver(self, agent: _Agent, task_id: str, now_ms: int) -> None:
        """The real batcher: a full batch goes at once, else a timer from its first task."""
        agent.waiting.append(task_id)
        if len(agent.waiting) >= self._scenario.max_size:
            self._flush(agent, agent.timer, now_ms)
        elif agent.timer == 0:
            self._timers += 1
            agent.timer = self._timers
            self._push(now_ms + self._scenario.max_wait_ms, "flush", (agent.agent_id, agent.timer))

    def _flush(self, agent: _Agent, timer: int, now_ms: int) -> None:
        if timer != agent.timer or not agent.waiting:
            return
        tasks, agent.waiting, agent.timer = tuple(agent.waiting), [], 0
        call_ms = self._scenario.call_ms + self._scenario.task_ms * len(tasks)
        self._calls.append(len(tasks))
        self._handler_ms += call_ms
        self._waits += [now_ms - self._arrived[task_id] for task_id in tasks]
        self._push(now_ms + round(call_ms), "end", (agent.agent_id, tasks))

    def _summary(self) -> BatchFigures:
        tasks = len(self._waits)
        first_ms = min(self._arrived.values())
        waits = sorted(self._waits)
        return BatchFigures(
            rate_per_s=self._rate,
            grouping=self._grouping,
            tasks=tasks,
            calls=len(self._calls),
            mean_batch=round(tasks / len(self._calls), 2),
            throughput_tps=round(tasks * 1000 / max(1, self._last_end_ms - first_ms), 1),
            handler_ms_per_task=round(self._handler_ms / tasks, 2),
            mean_wait_ms=round(sum(waits) / tasks, 1),
            p99_wait_ms=float(waits[min(tasks - 1, int(0.99 * tasks))]),
        )
