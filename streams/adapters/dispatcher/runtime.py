"""The dispatcher assembled: inputs, the engine around the core, outputs, checkpoints, the
agents' view, metrics and HTTP views, started and stopped in order.

``await Dispatcher(settings, config).start()`` returns once the instance is ready: the agent
registry is read, the group has assigned it its shards and they are recovered from the state
changelog. ``await dispatcher.stop()`` stops reading, takes a last checkpoint (everything done
is durable and committed), leaves the group and closes. :func:`run_dispatcher` runs one until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from confluent_kafka import Message, TopicPartition
from prometheus_client import CollectorRegistry

from streams.adapters import heap
from streams.adapters.dispatcher.agent_log import AgentLog
from streams.adapters.dispatcher.agents_view import AgentRecord, AgentsView, ViewRecord
from streams.adapters.dispatcher.checkpoint import Checkpointer
from streams.adapters.dispatcher.effects import Effects
from streams.adapters.dispatcher.engine import Engine
from streams.adapters.dispatcher.group import STOPPED, GroupView, instance_name, status_record
from streams.adapters.dispatcher.intake import Intake, TaskBudget
from streams.adapters.dispatcher.outputs import Outputs
from streams.adapters.dispatcher.registrations import Registrations
from streams.adapters.dispatcher.slots import AgentSlots
from streams.adapters.dispatcher.state import (
    ShardState,
    create_dispatcher_topics,
    group_id,
    read_shards,
    results_since_commit,
)
from streams.adapters.http import StatusServer
from streams.adapters.kafka import codec_for
from streams.adapters.logs import flush_summaries
from streams.adapters.metrics import DispatcherMetrics
from streams.adapters.status import (
    LoopLoad,
    RunState,
    SummaryCache,
    bottleneck_of,
    context_view,
    progress_view,
    run_state,
    scale_view,
)
from streams.adapters.timers import every
from streams.core.distributor import Distributor
from streams.core.scaling import Autoscaler
from streams.dispatcher_config import DispatcherConfig
from streams.errors import ConfigError, TaskdError
from streams.settings import Settings
from streams.wire import DispatcherStatus

log = logging.getLogger(__name__)

GAUGE_REFRESH_S = 1.0
"""How often the gauges (queue depth, loads, ...) are set from the core."""
DEAF_AFTER_MS = 3_000
"""This instance's own report (written every GAUGE_REFRESH_S) not read back for this long: it
cannot reach the broker, and the agents' silence proves nothing (``Distributor.set_connected``)."""
LOST_WRITE_WAIT_S = 30.0
"""How long a recovery waits for the open tasks of shards lost before to be written (they
are, within a round trip, once the broker answers: it has just assigned the shards)."""
SUMMARY_MAX_AGE_MS = 1_000
"""The statistics' summary is shared by the gauges and the views for this long: making one
sorts every queue-time sample."""
READY_TIMEOUT_S = 120.0
"""Longest wait for the group to assign shards on start (a killed instance's session must run
out first)."""


def wall_ms() -> int:
    """Milliseconds since the Unix epoch: task deadlines and submission times use this clock."""
    return time.time_ns() // 1_000_000


class Dispatcher:
    """One dispatcher instance (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        config: DispatcherConfig | None = None,
        *,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.settings = settings
        self.config = config or settings.dispatcher
        self.clock = clock
        self.codec = codec_for(settings)
        self._slots = AgentSlots(settings.shards)
        agent_log = AgentLog(
            suspect_after_ms=self.config.suspect_after_ms,
            down_after_ms=self.config.down_after_ms,
            capacity_of=self._slots.capacity,
        )
        self.core = Distributor(self.config.distributor(settings), on_transition=agent_log)
        self.registry = CollectorRegistry()
        self.metrics = DispatcherMetrics(self.registry, levels=settings.priority_levels)
        self._summary = SummaryCache(self.core.stats, max_age_ms=SUMMARY_MAX_AGE_MS)
        self.scaler = Autoscaler(
            self.config.scaling.core(), zone_strict=self.core.config.routing.zone_strict
        )
        """The autoscaling signal (``/scale``, ``taskd_desired_agents``), observed with the
        gauges."""
        self._loop_load = LoopLoad()
        self._states: dict[int, ShardState] = {}
        self._regs = Registrations()
        self._server: StatusServer | None = None
        self._timers: list[asyncio.Task[None]] = []
        self._assigned = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self.outputs: Outputs | None = None
        self.engine: Engine | None = None
        self.intake: Intake | None = None
        self.checkpointer: Checkpointer | None = None
        self._view: AgentsView | None = None
        self.instance = self.config.instance_id or instance_name()
        """This instance in the group's reports (``group.py``)."""
        self.group = GroupView()
        self._heard_own_ms = clock()
        """When this instance last read its own report back: the broker answers both ways."""

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Started: registry read, shards assigned and recovered."""
        return self._assigned.is_set() and not self._stopping

    async def start(self) -> None:
        """Start every part in order; returns once ready (see the module docstring).

        KafkaError when the broker cannot be reached, ConfigError for a busy HTTP port."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        replies_partitions = await asyncio.to_thread(create_dispatcher_topics, settings)
        outputs = self.outputs = Outputs(settings, loop)
        scheduler = self.core.config.scheduler
        budget = TaskBudget(scheduler.max_held, scheduler.resume_threshold)
        intake = self.intake = Intake(
            settings,
            group_id=group_id(settings),
            session_timeout_ms=self.config.session_timeout_ms,
            instance_id=self.config.instance_id,
            budget=budget,
            loop=loop,
            on_batch=self._on_batch,
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
            on_failure=self._fail,
        )
        effects = Effects(
            outputs=outputs,
            codec=self.codec,
            topics=settings.topics,
            regs=self._regs,
            states=self._states,
            metrics=self.metrics,
            clock=self.clock,
            events_enabled=self.config.events_enabled,
            replies_partitions=replies_partitions,
            record_bytes=settings.max_record_bytes,
        )
        self.checkpointer = Checkpointer(
            outputs,
            codec=self.codec,
            changelog=settings.topics.state,
            dedupe_window=self.config.dedupe_window,
            clock=self.clock,
        )
        self.engine = Engine(
            settings=settings,
            config=self.config,
            core=self.core,
            codec=self.codec,
            effects=effects,
            checkpointer=self.checkpointer,
            regs=self._regs,
            slots=self._slots,
            states=self._states,
            budget=budget,
            metrics=self.metrics,
            clock=self.clock,
        )
        await self._serve_http()
        view = self._view = AgentsView(settings, loop, self._on_view, self.codec)
        await asyncio.to_thread(view.start)
        await view.caught_up.wait()
        intake.start()
        await asyncio.wait_for(self._assigned.wait(), READY_TIMEOUT_S)
        if self._stopping:  # stopped while starting: its timers must not outlive it
            return
        self._heard_own_ms = self.clock()  # its reports start now
        steps = (
            (self.config.commit_interval_s, self._checkpoint, "the checkpoint"),
            (GAUGE_REFRESH_S, self._refresh_gauges, "refreshing the gauges"),
        )
        self._timers = [asyncio.ensure_future(every(*step)) for step in steps]
        log.info(
            "dispatcher ready: shards %s, %d open task(s) recovered",
            sorted(self._states),
            self.core.in_flight + self.core.held,
        )

    async def stop(self) -> None:
        """Stop reading, checkpoint what is owned, leave the group and close (idempotent)."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            for timer in self._timers:
                timer.cancel()
            if self.intake is not None:
                await self.intake.stop()  # its revoke callback takes the last checkpoint
            if self.outputs is not None:
                self._report(STOPPED)
                self._forget_report()
                await asyncio.to_thread(self.outputs.close)
            if self._view is not None:
                self._view.stop()
            await self._stop_http()
        finally:
            flush_summaries(force=True)
            self._stopped.set()
            log.info("dispatcher stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # --- views ---------------------------------------------------------------------------------

    @property
    def owned_shards(self) -> list[int]:
        """The shards the group gave this instance (none before it is ready)."""
        return [] if self.engine is None else self.engine.owned_shards

    @property
    def http_url(self) -> str | None:
        """Base URL of the HTTP views while they serve (with the port picked for port 0)."""
        return None if self._server is None else self._server.url

    def status_view(self) -> dict[str, object]:
        """The progress JSON (``/status``): "starting" until ready."""
        now_ms = self.clock()
        view = progress_view(
            self.core,
            now_ms,
            state=self._run_state(),
            summary=self._summary.at(now_ms),
            bottleneck=bottleneck_of(self.core, loop_busy=self._loop_load.busy()),
        )
        view["instance"] = self.instance
        view["owned_shards"] = self.owned_shards
        view["group"] = self.group.view(now_ms)
        return view

    def _run_state(self) -> RunState:
        return run_state(self.core, starting=not self._assigned.is_set(), draining=self._stopping)

    def context_view(self) -> dict[str, object]:
        """The distribution context (``/context``)."""
        now_ms = self.clock()
        return context_view(
            self.core,
            self.settings,
            now_ms=now_ms,
            summary=self._summary.at(now_ms),
            capacity_of=self._slots.capacity,
            dispatcher=self.config,
        )

    # --- callbacks -----------------------------------------------------------------------------

    def _on_batch(self, messages: list[Message]) -> None:
        assert self.engine is not None
        try:
            self.engine.on_batch(messages)
        except Exception:  # a bug: stop rather than go on with half a batch carried out
            log.exception("dispatcher: a batch failed; stopping (its inputs stay uncommitted)")
            asyncio.get_running_loop().call_soon(self._fail)

    async def _on_assigned(self, shards: list[int]) -> None:
        assert self.engine is not None
        started = time.monotonic()
        await self.engine.lost_written(LOST_WRITE_WAIT_S)
        recovered = await asyncio.to_thread(read_shards, self.settings, self.codec, shards)
        written = await self._results_since_commit(shards)
        count = self.engine.adopt(recovered, written)
        running = sum(entry.agent_id is not None for shard in recovered for entry in shard.open)
        log.info(
            "state restored for shards %s in %.1f s: %d open task(s) (%d in flight, %d queued "
            "again), %d ended task(s) remembered, %d result record(s) read back",
            shards,
            time.monotonic() - started,
            count,
            running,
            count - running,
            sum(len(shard.ended) for shard in recovered),
            len(written),
            extra={"shards": shards, "open_tasks": count, "in_flight": running},
        )
        log.info(
            "rebalance: shards %s assigned; this instance owns %s",
            shards,
            self.owned_shards,
            extra={"assigned": shards, "owned_shards": self.owned_shards},
        )
        self._assigned.set()

    async def _results_since_commit(self, shards: list[int]) -> list[tuple[int, bytes]]:
        """The results a recovery reads before any input (``results_since_commit``); none if
        they cannot be read: the intake reads them anyway, the recovery only sooner."""
        try:
            return await asyncio.to_thread(results_since_commit, self.settings, shards)
        except TaskdError as error:
            log.warning(
                "results since the last commit not read back (%s): tasks ended "
                "just before may run again",
                error,
            )
            return []

    async def _on_revoked(self, shards: list[int], lost: bool) -> list[TopicPartition]:
        assert self.engine is not None
        if lost:
            log.warning("shards %s lost (the group session ran out): now another's", shards)
        offsets = await self.engine.hand_over(shards, lost=lost)
        log.info(
            "rebalance: shards %s %s; this instance owns %s",
            shards,
            "dropped" if lost else "revoked, checkpointed and handed over",
            self.owned_shards,
            extra={"revoked": shards, "lost": lost, "owned_shards": self.owned_shards},
        )
        return offsets

    def _checkpoint(self) -> None:
        if self.engine is not None and self.intake is not None:
            self.engine.checkpoint(self.intake.commit)

    def _on_view(self, records: list[ViewRecord]) -> None:
        reports = [record for record in records if isinstance(record, DispatcherStatus)]
        if reports:
            now_ms = self.clock()
            self.group.update(reports, now_ms)
            if any(report.instance == self.instance for report in reports):
                self._heard_own_ms = now_ms
                self._check_link(now_ms)
        agents: list[AgentRecord] = [r for r in records if not isinstance(r, DispatcherStatus)]
        if agents and self.engine is not None:
            self.engine.on_view(agents)

    def _check_link(self, now_ms: int) -> None:
        """Tell the core whether this instance hears from the broker: while its own reports do
        not come back, failure detection waits (an outage is not the agents' failure)."""
        connected = now_ms - self._heard_own_ms <= DEAF_AFTER_MS
        if connected == self.core.connected:
            return
        self.core.set_connected(connected, now_ms)
        if connected:
            log.warning("the broker answers again: agents are judged by their heartbeats from now")
        else:
            log.error(
                "the broker has not answered for %.1f s: no agent is taken for down and no lease "
                "runs out until it does",
                (now_ms - self._heard_own_ms) / 1000,
            )

    def _refresh_gauges(self) -> None:
        flush_summaries()  # rate-limited logs: the summaries due
        now_ms = self.clock()
        self._check_link(now_ms)
        self.metrics.refresh(self.core, now_ms, summary=self._summary.at(now_ms))
        self.metrics.on_shards(len(self.owned_shards), self.settings.shards)
        self._loop_load.sample(time.monotonic(), time.thread_time())  # this runs on the loop
        agents, demand = self.core.agents(), self.core.stats.demand()
        self.metrics.on_scaling(self.scaler.observe(now_ms, agents, demand, self._slots.capacity))
        self._report(self._run_state())

    def _forget_report(self) -> None:
        assert self.outputs is not None
        key = self.instance.encode()
        topic = self.settings.topics.dispatchers
        self.outputs.send_unconfirmed(topic, None, key=key, partition=0)

    def _report(self, state: str) -> None:
        """Tell the group this instance's shards and counts (``group.py``): unconfirmed, so no
        checkpoint waits for it, and never after the last one (``stopped``)."""
        if self.outputs is None or (self._stopping and state != STOPPED):
            return
        now_ms = self.clock()
        record = status_record(
            self.instance,
            state,
            self.owned_shards,
            self._summary.at(now_ms),
            held=self.core.held,
            in_flight=self.core.in_flight,
            now_ms=now_ms,
        )
        self.group.update([record], now_ms)
        key = self.instance.encode()
        self.outputs.send_unconfirmed(
            self.settings.topics.dispatchers, self.codec.encode(record), key=key, partition=0
        )

    def _fail(self) -> None:
        if not self._stopping:
            self._timers.append(asyncio.ensure_future(self.stop()))

    # --- HTTP ----------------------------------------------------------------------------------

    async def _serve_http(self) -> None:
        """Serve ``/metrics``, ``/status``, ``/context``, ``/scale`` and the dashboard (if enabled);
        ConfigError naming the address when it cannot be bound."""
        if not self.config.web_enabled:
            return
        server = StatusServer(
            self.settings.http_host,
            self.settings.http_port,
            status=self.status_view,
            context=self.context_view,
            registry=self.registry,
            token=self.settings.views_token(),
            metrics_open=self.settings.http_metrics_open,
            scale=lambda: scale_view(self.scaler),
        )
        await server.start()
        self._server = server
        log.info("dispatcher HTTP views on %s", server.url)

    async def _stop_http(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()


def run_dispatcher(dispatcher: Dispatcher) -> int:
    """Run ``dispatcher`` in this process until SIGTERM or SIGINT; the exit code (0: stopped
    cleanly)."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(dispatcher.stop()))
        try:
            await dispatcher.start()
        except (TaskdError, ConfigError) as error:
            log.error("%s", error)
            await dispatcher.stop()
            return 1
        heap.settle()  # this process is the dispatcher: what start-up made lives as long
        await dispatcher.wait_stopped()
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main())
    return 130
