"""The dispatcher assembled: the Faust app, its tables and inputs, the loop and its writers,
its metrics and HTTP views.

``Dispatcher(settings, config).app`` is a plain Faust app: run it with ``faust.Worker`` (the
CLI does) or ``await app.start()`` in tests. Once Faust has recovered the tables, the main
task serves the HTTP views (``/status`` says "starting" until the loop runs), reads the
registry to its end, restores the in-flight entries and ticks the loop; input events read
before that wait (unacked) in a buffer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import faust
from prometheus_client import CollectorRegistry

from streams.adapters.client import codec_for
from streams.adapters.dispatcher.acks import OrderedAcks, Token
from streams.adapters.dispatcher.agents_view import AgentsView
from streams.adapters.dispatcher.app import build_app
from streams.adapters.dispatcher.book import Book, EndedWindow
from streams.adapters.dispatcher.config import DispatcherConfig
from streams.adapters.dispatcher.executor import Executor, Intake, Io
from streams.adapters.dispatcher.inputs import Decoder, attach_inputs
from streams.adapters.dispatcher.loop import DispatchLoop
from streams.adapters.dispatcher.outputs import Outputs
from streams.adapters.dispatcher.registrations import Registrations
from streams.adapters.dispatcher.tables import Tables
from streams.adapters.dispatcher.writes import EventLog, Writes
from streams.adapters.http import StatusServer
from streams.adapters.metrics import DispatcherMetrics
from streams.adapters.status import SummaryCache, context_view, progress_view, run_state
from streams.core.distributor import Distributor
from streams.errors import ConfigError
from streams.settings import Settings
from streams.wire import Task, TaskResult

log = logging.getLogger(__name__)

GAUGE_REFRESH_S = 1.0
"""How often the gauges (queue depth, loads, ...) are set from the core."""
SUMMARY_MAX_AGE_MS = 1_000
"""The statistics' summary is shared by the gauges and the views for this long: making one
sorts every queue-time sample."""


def wall_ms() -> int:
    """Milliseconds since the Unix epoch: task deadlines and submission times use this clock."""
    return time.time_ns() // 1_000_000


class GateIntake(Intake):
    """Back-pressure on the task topics: the tasks agent waits at this gate while it is shut.

    Faust's own ``pause_partitions`` is not used: records of a partition paused while Faust
    iterates a fetched batch are dropped (their position already past them) and never read
    again until a restart. A stream that stops taking events fills its buffer, and Faust then
    stops fetching by its own flow control, which keeps its positions right.
    """

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()

    @property
    def paused(self) -> bool:
        return not self.gate.is_set()

    def pause(self) -> None:
        self.gate.clear()
        log.info("task topics paused: the scheduler holds its maximum")

    def resume(self) -> None:
        self.gate.set()
        log.info("task topics resumed")


class Dispatcher:
    """One dispatcher instance; its ``app`` owns the lifecycle."""

    def __init__(
        self,
        settings: Settings,
        config: DispatcherConfig | None = None,
        *,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.settings = settings
        self.config = config or DispatcherConfig()
        self.app = build_app(settings, self.config)
        self.tables = Tables(self.app, settings)
        self.acks = OrderedAcks()
        self.codec = codec_for(settings)
        self.clock = clock
        self.core = Distributor(self.config.distributor(settings))
        self.loop: DispatchLoop | None = None
        """Set once the tables are recovered and the registry is read (see ``ready``)."""
        self.registry = CollectorRegistry()
        self.metrics = DispatcherMetrics(self.registry)
        self._summary = SummaryCache(self.core.stats, max_age_ms=SUMMARY_MAX_AGE_MS)
        self._server: StatusServer | None = None
        self._stopping = False
        self.intake = GateIntake()
        self._early: list[Callable[[DispatchLoop], None]] = []
        decoder = Decoder(settings, self.codec, self.acks, self)
        attach_inputs(self.app, settings, decoder, self.intake.gate)
        self.app.task(self._main)

    # --- the input sink: forwarded to the loop, buffered until it runs -------------------------

    def task_read(self, task: Task, token: Token) -> None:
        self._to_loop(lambda loop: loop.task_read(task, token))

    def retry_read(self, task: Task, due_ms: int, token: Token) -> None:
        self._to_loop(lambda loop: loop.retry_read(task, due_ms, token))

    def result_read(self, result: TaskResult, token: Token) -> None:
        self._to_loop(lambda loop: loop.result_read(result, token))

    def malformed(self, raw: bytes, error: str, token: Token) -> None:
        self._to_loop(lambda loop: loop.malformed(raw, error, token))

    @property
    def http_url(self) -> str | None:
        """Base URL of the HTTP views while they serve (with the port picked for port 0)."""
        return None if self._server is None else self._server.url

    def status_view(self) -> dict[str, object]:
        """The progress JSON (``/status``): "starting" until the loop runs, recovery done."""
        now_ms = self.clock()
        starting = self.loop is None or self.loop.recovering
        state = run_state(self.core, starting=starting, draining=self._stopping)
        return progress_view(self.core, now_ms, state=state, summary=self._summary.at(now_ms))

    def context_view(self) -> dict[str, object]:
        """The distribution context (``/context``)."""
        now_ms = self.clock()
        return context_view(
            self.core, self.settings, now_ms=now_ms, summary=self._summary.at(now_ms)
        )

    def _to_loop(self, call: Callable[[DispatchLoop], None]) -> None:
        if self.loop is None:
            self._early.append(call)
        else:
            call(self.loop)

    # --- the main task --------------------------------------------------------------------------

    async def _main(self) -> None:
        outputs = Outputs(self.settings, asyncio.get_running_loop())
        writes = Writes(outputs, asyncio.get_running_loop())
        self.tables.attach(outputs)
        events = EventLog(
            outputs, self.codec, self.settings.topics.events, enabled=self.config.events_enabled
        )
        loop = self._assemble(writes, events)
        view = AgentsView(self.settings, asyncio.get_running_loop(), loop.view_records)
        gauges = asyncio.ensure_future(self._refresh_gauges())
        try:
            await self._serve_http()
            await asyncio.to_thread(view.start)
            await view.caught_up.wait()
            count = loop.recover(
                self.tables.inflight_items(), self.tables.ended_items(), self.codec
            )
            log.info("dispatcher ready: %d in-flight task(s) recovered", count)
            self.loop = loop
            early, self._early = self._early, []
            for call in early:
                call(loop)
            await loop.run()
        finally:
            self._stopping = True
            gauges.cancel()
            view.stop()
            writes.close()
            await self._stop_http()
            self.tables.detach()
            outputs.close()

    async def _serve_http(self) -> None:
        """Serve ``/metrics``, ``/status``, ``/context`` and the dashboard (if enabled);
        ConfigError naming the address when it cannot be bound."""
        if not self.config.web_enabled:
            return
        server = StatusServer(
            self.settings.http_host,
            self.settings.http_port,
            status=self.status_view,
            context=self.context_view,
            registry=self.registry,
        )
        try:
            await server.start()
        except ConfigError as error:
            log.error("%s", error)  # Faust logs a crash of this task with a long traceback
            raise
        self._server = server
        log.info("dispatcher HTTP views on %s", server.url)

    async def _stop_http(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def _refresh_gauges(self) -> None:
        while True:
            now_ms = self.clock()
            self.metrics.refresh(self.core, now_ms, summary=self._summary.at(now_ms))
            await asyncio.sleep(GAUGE_REFRESH_S)

    def _assemble(self, writes: Writes, events: EventLog) -> DispatchLoop:
        core = self.core
        regs = Registrations()
        ended = EndedWindow(
            self.config.dedupe_window, lambda task_id, shard: self.tables.drop_ended(shard, task_id)
        )
        book = Book(ended=ended)
        io = Io(
            writes,
            self.tables,
            self.acks,
            self.codec,
            self.settings.topics,
            self.intake,
            events,
            self.metrics,
        )
        executor = Executor(core, book, regs, io, self.clock)
        return DispatchLoop(
            core=core,
            book=book,
            regs=regs,
            executor=executor,
            acks=self.acks,
            config=self.config,
            clock=self.clock,
        )


def run_worker(dispatcher: Dispatcher, *, loglevel: str = "info") -> None:
    """Run ``dispatcher`` in this process until SIGTERM or SIGINT (Faust's worker owns the
    event loop and the signals); exits the process when done."""
    worker = faust.Worker(dispatcher.app, loglevel=loglevel, override_logging=False)
    worker.execute_from_commandline()
