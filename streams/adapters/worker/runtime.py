"""The agent: claim a dispatch partition, run its assignments, heartbeat, drain on stop.

``await Agent(config, settings).run()`` runs until :meth:`Agent.stop` (the CLI calls it on
SIGTERM and SIGINT), then drains (:mod:`streams.adapters.worker.draining`) and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from streams.adapters.kafka import codec_for
from streams.adapters.metrics import (
    METRICS_PORT_TRIES,
    AgentMetrics,
    MetricsServer,
    serve_metrics,
)
from streams.adapters.timers import every
from streams.adapters.worker.config import AgentConfig
from streams.adapters.worker.dispatch import DispatchReader
from streams.adapters.worker.draining import finish_work, sign_off
from streams.adapters.worker.errors import AgentError
from streams.adapters.worker.handlers import Handlers, Invokers
from streams.adapters.worker.heartbeats import Heartbeats
from streams.adapters.worker.kafka import Writer
from streams.adapters.worker.registration import Registrar
from streams.adapters.worker.runner import TaskRunner
from streams.settings import Settings
from streams.wire import AgentRegistration, AgentStatus

log = logging.getLogger(__name__)

POLL_S = 0.1
"""Longest wait for assignments before the loop looks at stop requests and commits again."""
COMMIT_EVERY_S = 0.2
"""Shortest time between two commits while reading. A later commit only means more to read
again after a restart, and what is read again is skipped: a restarted agent claims a new epoch."""
SUMMARIES_EVERY_S = 1.0
"""How often the rate-limited failure log writes the summaries that are due."""


@dataclass(frozen=True, slots=True)
class Ready:
    """What a started agent owns: its partition, epoch and start offset, and its metrics
    address."""

    agent_id: str
    partition: int
    epoch: int
    start_offset: int
    """The offset it reads from: max(the claim's start offset, the committed offset)."""
    metrics_host: str
    metrics_port: int
    capacity: int
    skills: tuple[str, ...]


@dataclass(slots=True)
class _Session:
    """The parts of one run, from the claim to the drain."""

    registrar: Registrar
    reader: DispatchReader
    runner: TaskRunner
    invokers: Invokers
    heartbeats: Heartbeats


class Agent:
    """A worker agent; construct it (ConfigError for a bad handler), then ``await run()``."""

    def __init__(
        self,
        config: AgentConfig,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        on_ready: Callable[[Ready], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.metrics = AgentMetrics(registry or CollectorRegistry(), capacity=config.capacity)
        self.ready: Ready | None = None
        self._handlers = Handlers(config)
        self._codec = codec_for(settings)
        self._on_ready = on_ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._started_or_ended = asyncio.Event()

    def stop(self) -> None:
        """Ask the agent to drain and return from ``run``; safe from any thread or a signal."""
        self._stopping = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def wait_ready(self) -> Ready:
        """Until the agent owns its partition; AgentError if ``run`` ended before that."""
        await self._started_or_ended.wait()
        if self.ready is None:
            raise AgentError(f"agent {self.config.agent_id} stopped before it was ready")
        return self.ready

    async def run(self) -> None:
        """Claim a partition and run assignments until ``stop``, then drain.

        KafkaError when the broker is unreachable, ConfigError for missing topics or a metrics
        port in use, AgentError when no partition can be had or a newer owner fenced this one.
        """
        self._loop = asyncio.get_running_loop()
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._run(stack)
        finally:
            self._started_or_ended.set()

    async def _run(self, stack: contextlib.AsyncExitStack) -> None:
        config, settings = self.config, self.settings
        server = self._serve_metrics()
        stack.callback(server.close)
        writer = Writer(settings)
        stack.callback(writer.close)
        pool = ThreadPoolExecutor(config.capacity, thread_name_prefix="taskd-handler")
        stack.callback(pool.shutdown)
        registrar = Registrar(config, settings, writer, self._codec)
        claim = await asyncio.to_thread(registrar.claim)
        reader = await self._reader(claim, stack)
        session = self._session(claim, registrar, reader, writer, pool)
        await session.heartbeats.announce(AgentStatus.READY)
        self._announce(claim, reader.start_offset, server.port)
        await self._serve_then_drain(session, stack)

    def _serve_metrics(self) -> MetricsServer:
        """The agent's /metrics: several agents on one host with the same settings each take
        the next free port, so the second one does not fail; it says where it went."""
        wanted = self.settings.agent_metrics_port
        host = self.settings.agent_metrics_host
        server = serve_metrics(
            self.metrics.registry, port=wanted, host=host, tries=METRICS_PORT_TRIES
        )
        if wanted and server.port != wanted:
            log.warning(
                "agent %s: metrics port %d is in use, serving metrics on %s:%d instead",
                self.config.agent_id,
                wanted,
                host,
                server.port,
            )
        return server

    async def _reader(
        self, claim: AgentRegistration, stack: contextlib.AsyncExitStack
    ) -> DispatchReader:
        queue_size = self.config.capacity + self.config.prefetch_slots
        reader = DispatchReader(self.settings, claim.partition, queue_size=queue_size)
        stack.push_async_callback(reader.close)
        await reader.open(claim.start_offset, timeout_s=self.config.connect_timeout_ms / 1000)
        return reader

    def _session(
        self,
        claim: AgentRegistration,
        registrar: Registrar,
        reader: DispatchReader,
        writer: Writer,
        pool: ThreadPoolExecutor,
    ) -> _Session:
        invokers = Invokers(self._handlers, pool)
        runner = TaskRunner(
            self.config,
            self.settings,
            claim,
            invokers=invokers,
            writer=writer,
            codec=self._codec,
            metrics=self.metrics,
            wake=self._wake,
        )
        heartbeats = Heartbeats(
            self.config,
            self.settings,
            writer=writer,
            codec=self._codec,
            load=runner.load,
            task_types=self._handlers.task_types(),
            capacity=runner.usable_capacity,
            batch_specs=self._handlers.batch_specs(),
        )
        return _Session(registrar, reader, runner, invokers, heartbeats)

    async def _serve_then_drain(self, session: _Session, stack: contextlib.AsyncExitStack) -> None:
        failures = session.runner.failures
        background = [
            asyncio.create_task(session.heartbeats.keep_sending()),
            asyncio.create_task(session.registrar.keep_renewing()),
            asyncio.create_task(every(SUMMARIES_EVERY_S, failures.flush, "the failure summaries")),
        ]
        stack.push_async_callback(_cancel, background)
        stack.callback(lambda: failures.flush(force=True))
        await self._serve(session.reader, session.runner)
        await finish_work(
            runner=session.runner,
            invokers=session.invokers,
            reader=session.reader,
            heartbeats=session.heartbeats,
        )
        await _cancel(background)
        await sign_off(heartbeats=session.heartbeats, registrar=session.registrar)
        if session.runner.fenced_by is not None:
            raise AgentError(
                f"agent {self.config.agent_id} gave up dispatch partition "
                f"{session.reader.partition}: an assignment of epoch {session.runner.fenced_by} "
                "shows that a newer owner claimed it"
            )

    async def _serve(self, reader: DispatchReader, runner: TaskRunner) -> None:
        """Read while not stopping and not fenced, as much as there is room for.

        While every slot and the prefetch are full nothing is read; librdkafka's own read-ahead
        stops at ``queued.min.messages`` (the prefetch), so the partition needs no pause.
        Commits go out at most every ``COMMIT_EVERY_S``: each is a call on the reader's thread.
        """
        committed_at = 0.0
        while not self._stopping and runner.fenced_by is None:
            if time.monotonic() - committed_at >= COMMIT_EVERY_S:
                offset = runner.offsets.to_commit()
                if offset is not None:
                    await reader.commit(offset, wait=False)
                    committed_at = time.monotonic()
            self._wake.clear()
            room = runner.room()
            if room <= 0:
                await self._wake.wait()
                continue
            messages = await reader.poll(room, timeout_s=POLL_S)
            if messages:
                runner.take(messages)

    def _announce(self, claim: AgentRegistration, start_offset: int, metrics_port: int) -> None:
        self.ready = Ready(
            agent_id=claim.agent_id,
            partition=claim.partition,
            epoch=claim.epoch,
            start_offset=start_offset,
            metrics_host=self.settings.agent_metrics_host,
            metrics_port=metrics_port,
            capacity=self.config.capacity,
            skills=self.config.skills,
        )
        self._started_or_ended.set()
        if self._on_ready is not None:
            self._on_ready(self.ready)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
