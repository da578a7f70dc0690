"""Helpers shared by the pipeline tests (no tests here): a dispatcher and real agents (the
worker runtime with the built-in ``streams.examples:work`` handler) in one process, and readers of
what a user sees: results and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from streams.adapters.dispatcher import Dispatcher, DispatcherConfig
from streams.adapters.kafka import codec_for, read_snapshot
from streams.settings import Settings
from streams.wire import (
    Assignment,
    AssignmentBatch,
    Codec,
    DeadLetter,
    ResultBatch,
    TaskResult,
    WireRecord,
)
from streams.worker import Agent, AgentConfig
from tests.adapters.test_dispatcher_support import dispatcher_config, running_dispatcher

CODEC = Codec()
DEMO = "streams.examples:work"
PIPELINE_WAIT_S = 180.0
"""Upper bound of a whole pipeline run: the test fails with a message past it."""


def pipeline_config(**fields: Any) -> DispatcherConfig:
    """Timings that tolerate a busy test process: DOWN only after 6 s of silence."""
    defaults: dict[str, Any] = {"suspect_after_ms": 3_000, "down_after_ms": 6_000}
    return dispatcher_config(**{**defaults, **fields})


def work(work_ms: float = 0, fail: str | None = None) -> bytes:
    """A payload for the demo handler."""
    spec: dict[str, Any] = {"work_ms": work_ms}
    if fail is not None:
        spec["fail"] = fail
    return json.dumps(spec).encode()


@dataclass
class CapacityWatch:
    """Samples the dispatcher's view of each agent: the most leases it ever held at once."""

    dispatcher: Dispatcher
    peak: Counter[str] = field(default_factory=Counter)
    capacity: dict[str, int] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            for info in self.dispatcher.core.agents():
                self.peak[info.agent_id] = max(self.peak[info.agent_id], info.in_flight)
                self.capacity[info.agent_id] = info.capacity
            await asyncio.sleep(0.002)

    def over(self) -> dict[str, tuple[int, int]]:
        """Agents that ever held more leases than their capacity: (peak, capacity)."""
        return {
            agent: (peak, self.capacity[agent])
            for agent, peak in self.peak.items()
            if peak > self.capacity[agent]
        }


@contextlib.asynccontextmanager
async def pipeline(
    settings: Settings,
    capacities: Sequence[int],
    config: DispatcherConfig | None = None,
    *,
    start_agents: bool = True,
    handlers: Sequence[str] | None = None,
) -> AsyncIterator[tuple[Dispatcher, list[Agent], CapacityWatch]]:
    """A dispatcher, agents ``a0..`` of the given capacities (running ``handlers``, one per
    agent, default the demo handler), and a capacity watch."""
    handlers = handlers or [DEMO] * len(capacities)
    agents = [
        Agent(
            AgentConfig(
                agent_id=f"a{i}", capacity=capacity, handler=handler, heartbeat_interval_ms=200
            ),
            settings,
        )
        for i, (capacity, handler) in enumerate(zip(capacities, handlers, strict=True))
    ]
    async with running_dispatcher(settings, config or pipeline_config()) as dispatcher:
        watch = CapacityWatch(dispatcher)
        watching = asyncio.get_running_loop().create_task(watch.run())
        runs: list[asyncio.Task[None]] = []
        try:
            if start_agents:
                runs = [await start(agent) for agent in agents]
            yield dispatcher, agents, watch
        finally:
            for each in agents:
                each.stop()
            await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)
            watching.cancel()


def agent(settings: Settings, agent_id: str, capacity: int) -> Agent:
    """A real agent running the demo handler, heartbeating every 200 ms."""
    config = AgentConfig(
        agent_id=agent_id, capacity=capacity, handler=DEMO, heartbeat_interval_ms=200
    )
    return Agent(config, settings)


async def start(agent: Agent) -> asyncio.Task[None]:
    """Run ``agent`` in the background once it owns its partition."""
    run = asyncio.get_running_loop().create_task(agent.run())
    await asyncio.wait_for(agent.wait_ready(), 60)
    return run


@contextlib.asynccontextmanager
async def agents_running(agents: Sequence[Agent]) -> AsyncIterator[None]:
    """``agents`` started (each once it owns its partition), stopped and awaited at the end."""
    runs = [await start(agent) for agent in agents]
    try:
        yield
    finally:
        for agent in agents:
            agent.stop()
        await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)


def read_all(settings: Settings, topic: str, record_type: type[WireRecord]) -> list[Any]:
    """Every record of ``topic`` up to its current end, decoded as every component does."""
    codec = codec_for(settings)
    return [codec.decode(value, record_type) for value in read_values(settings, topic)]


def read_values(settings: Settings, topic: str) -> list[bytes]:
    """The value of every record of ``topic`` up to its current end, as kcat would print it."""
    return [value for _, value in read_stamped(settings, topic)]


def read_stamped(settings: Settings, topic: str) -> list[tuple[int, bytes]]:
    """(timestamp in ms, value) of every record of ``topic`` up to its current end, in the
    order of each partition (what any reader of the topic sees: ``read_snapshot``)."""

    def stamped(message: Message) -> tuple[int, bytes]:
        return message.timestamp()[1], message.value() or b""

    return read_snapshot(settings, topic, stamped, timeout_s=60)


def all_results(settings: Settings) -> list[TaskResult]:
    """Every result the agents wrote so far (each record holds a batch of them)."""
    batches = read_all(settings, settings.topics.results, ResultBatch)
    return [result for batch in batches for result in batch.results]


def all_assignments(settings: Settings) -> list[Assignment]:
    """Every assignment the dispatcher wrote so far, in the order of each partition."""
    batches = read_all(settings, settings.topics.dispatch, AssignmentBatch)
    return [item for batch in batches for item in batch.assignments]


async def until_results(
    settings: Settings, expected: set[str], *, statuses: set[str] | None = None
) -> list[TaskResult]:
    """Every result so far, once each task id in ``expected`` has a final one."""
    deadline = time.monotonic() + PIPELINE_WAIT_S
    while True:
        results = await asyncio.to_thread(all_results, settings)
        done = {r.task_id for r in results if statuses is None or r.status.value in statuses}
        if expected <= done:
            return results
        missing = len(expected - done)
        assert time.monotonic() < deadline, f"{missing} task(s) without a result"
        await asyncio.sleep(1.0)


async def until_dead(settings: Settings, count: int) -> list[DeadLetter]:
    """The dead letters, once there are at least ``count``."""
    deadline = time.monotonic() + PIPELINE_WAIT_S
    while True:
        letters = await asyncio.to_thread(read_all, settings, settings.topics.dlq, DeadLetter)
        if len(letters) >= count:
            return letters
        assert time.monotonic() < deadline, f"{len(letters)} dead letters, {count} expected"
        await asyncio.sleep(0.5)
