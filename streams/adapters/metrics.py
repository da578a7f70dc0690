"""Prometheus metrics of an agent (``taskd_agent_*``) and of the dispatcher (``taskd_*``).

Durations in seconds. Built from an injected :class:`~prometheus_client.CollectorRegistry`, so
several agents or dispatchers in one process (tests) keep apart. An agent serves its registry on
its own port (:func:`serve_metrics`); the dispatcher through its HTTP views
(:class:`streams.adapters.http.StatusServer`). The dispatcher's per-agent gauges are named
``taskd_agents_*``, not ``taskd_agent_*``: that prefix belongs to the agents' own metrics, and
``taskd_agent_capacity`` there is unlabelled, so sums over it would mix the two.

Counts are counters (``..._total``), levels are gauges. Labels stay bounded: ``priority`` has
one value per priority level (``p0`` most urgent), ``status``, ``reason`` and ``state`` one per
enum member, ``agent`` one per live agent, and ``type`` (task types come from producers) the
first :data:`MAX_TYPE_LABELS` types seen, every later one counted as :data:`OTHER_TYPE`.
``docs/operations.md`` (*Monitoring*) lists every metric, the dashboard and the alerts.
"""

from __future__ import annotations

import errno
import math
import statistics
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streams.adapters.status import slot_load
from streams.core.actions import Action, DeadLetter, Dispatch, ResultStatus, Retry, StopRun
from streams.core.distributor import Distributor
from streams.core.model import AgentInfo, AgentState, DeadLetterReason, Job
from streams.core.scaling import PoolSignal
from streams.core.stats import Summary
from streams.errors import ConfigError, TaskdError

RUN_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0)
"""Handler run times from a millisecond to half an hour."""


class AgentMetrics:
    """Every metric of one agent, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, capacity: int) -> None:
        self.registry = registry
        self.started = Counter(
            "taskd_agent_tasks_started", "Tasks handed to a handler.", registry=registry
        )
        self.completed = Counter(
            "taskd_agent_results",
            "Results written, by status (REJECTED ones were never started).",
            ["status"],
            registry=registry,
        )
        self.skipped = Counter(
            "taskd_agent_assignments_skipped",
            "Assignments dropped unrun: stale epoch, repeated attempt or undecodable bytes.",
            ["reason"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "taskd_agent_task_run_seconds",
            "How long handlers ran, in seconds (batch handlers: each task's whole batch).",
            buckets=RUN_SECONDS_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "taskd_agent_in_flight", "Tasks running now (at most the capacity).", registry=registry
        )
        self.prefetched = Gauge(
            "taskd_agent_prefetched",
            "Assignments fetched and waiting for a free slot.",
            registry=registry,
        )
        self.capacity = Gauge(
            "taskd_agent_capacity", "Slots: tasks the agent runs at once.", registry=registry
        )
        self.past_lease = Gauge(
            "taskd_agent_runs_past_lease",
            "Runs still going after their lease ran out: told to stop, each holds its slot.",
            registry=registry,
        )
        self.capacity.set(capacity)
        self.completed_by_status = {
            status.value: self.completed.labels(status=status.value) for status in ResultStatus
        }
        """One child per status, made once (``labels()`` is a lookup under a lock)."""


DISPATCH_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0
)  # fmt: skip
"""Submitted -> dispatched, from a millisecond (the 50 ms target in the middle) to 5 minutes."""
QUEUE_SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0
)  # fmt: skip
"""Submitted -> started, from 5 ms to an hour."""

MAX_TYPE_LABELS = 20
"""Task types that get a ``type`` label value of their own: the first ones seen."""
OTHER_TYPE = "other"
"""The ``type`` label value of every task type past the first :data:`MAX_TYPE_LABELS`."""

_Metric = TypeVar("_Metric", Counter, Histogram)


class BoundedLabels:
    """Label values for a field that producers choose (the task type): the first ``limit``
    values seen are kept as they are, every later one becomes ``other``. A producer sending a
    new type with every task grows no series past the limit."""

    def __init__(self, limit: int, other: str = OTHER_TYPE) -> None:
        if limit < 0:
            raise TaskdError(f"limit must be >= 0, got {limit}")
        self._limit = limit
        self._other = other
        self._kept: set[str] = set()

    def __call__(self, value: str) -> str:
        """The label value for ``value``: itself while it is (or may become) one of the kept."""
        if value in self._kept:
            return value
        if len(self._kept) < self._limit and value != self._other:
            self._kept.add(value)
            return value
        return self._other

    @property
    def kept(self) -> frozenset[str]:
        """The values that have a label value of their own."""
        return frozenset(self._kept)


class _Children(Generic[_Metric]):
    """A labelled metric's children, each made once: ``labels()`` is a lookup under a lock."""

    def __init__(self, metric: _Metric) -> None:
        self._metric: _Metric = metric
        self._made: dict[tuple[str, ...], _Metric] = {}

    def __call__(self, *values: str) -> _Metric:
        child = self._made.get(values)
        if child is None:
            child = self._made[values] = self._metric.labels(*values)
        return child


def priority_label(level: int) -> str:
    """A priority level as its label value: ``p0`` (most urgent), ``p1``, ..."""
    return f"p{level}"


class DispatcherMetrics:
    """Every metric of one dispatcher, registered in ``registry`` (prefix ``taskd_``).

    Counters and histograms are fed as things happen (``on_*``, in the core's terms); gauges,
    and the counters the core's statistics keep (inversions, deadlines), are set from the
    distributor by :meth:`refresh`, meant to run about once a second on the loop that owns the
    distributor. ``levels`` (the priority levels) makes every priority's series exist from the
    start at 0, so a rate over them has a start; ``max_types`` bounds the ``type`` label.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        levels: int | None = None,
        max_types: int = MAX_TYPE_LABELS,
    ) -> None:
        self.registry = registry
        self.types = BoundedLabels(max_types)
        """The ``type`` label value of each task type."""
        self._define_counters(registry)
        self._define_histograms(registry)
        self._define_gauges(registry)
        self._agent_series: set[str] = set()
        """Agent ids whose ``taskd_agents_*`` series are exported now."""
        self._pools: set[str] = set()
        """Pools whose ``taskd_desired_agents`` series are exported now."""
        self._counted: dict[str, int] = {"inversions": 0, "met": 0, "missed": 0}
        """What the statistics' counts stood at when last copied into the counters."""
        for level in range(levels or 0):
            priority = priority_label(level)
            self._dispatched(priority)
            for status in ResultStatus:
                self._results(status.value, priority)

    # --- events ------------------------------------------------------------------------------

    def on_received(self, job: Job) -> None:
        """A valid task read from a task topic (retries, attempt > 0, are not counted again)."""
        if job.attempt == 0:
            self.received.inc()

    def on_dispatched(self, job: Job, dispatched_ms: int) -> None:
        """The task went to an agent; a first attempt also gives its dispatch latency."""
        priority = priority_label(job.priority)
        self._dispatched(priority).inc()
        if job.attempt == 0:
            self._dispatch_latency(priority).observe(_seconds(dispatched_ms - job.submitted_ms))

    def on_result(
        self, job: Job, status: ResultStatus, *, started_ms: int, finished_ms: int
    ) -> None:
        """An agent's result the core accepted (``result`` returned actions: not a stale one).

        Queue time (submitted -> started) is observed for first attempts only, as the core's
        statistics count it (a retry's wait would include the earlier runs); run time for every
        run but a REJECTED one, which never ran. Clock skew never makes a duration negative.
        """
        priority = priority_label(job.priority)
        self._results(status.value, priority).inc()
        if status is ResultStatus.REJECTED:
            return
        task_type = self.types(job.task_type)
        if job.attempt == 0:
            self._queue_time(priority, task_type).observe(_seconds(started_ms - job.submitted_ms))
        self._run_time(task_type).observe(_seconds(finished_ms - started_ms))

    def on_retry(self, tier: int) -> None:
        """A task went to retry tier ``tier`` (0-based, in the order of the retry topics)."""
        self.retried.labels(tier=str(tier)).inc()

    def on_dead_letter(self, reason: DeadLetterReason) -> None:
        """A task (or undecodable bytes: MALFORMED) went to the dead letters."""
        self._dead[reason].inc()
        if reason is DeadLetterReason.EXPIRED:
            self.expired.inc()

    def on_actions(self, actions: Iterable[Action]) -> None:
        """Count the core's decisions: dispatches, retries, dead letters and preemptions;
        others are no-ops."""
        for action in actions:
            if isinstance(action, Dispatch):
                self.on_dispatched(action.job, action.dispatched_ms)
            elif isinstance(action, Retry):
                self.on_retry(action.tier)
            elif isinstance(action, DeadLetter):
                self.on_dead_letter(action.reason)
            elif isinstance(action, StopRun) and action.preempted:
                self.on_preempted(action.job)

    def on_preempted(self, job: Job) -> None:
        """A run of ``job`` is stopped to free its slot for a more urgent task."""
        self.preempted.labels(priority=priority_label(job.priority)).inc()

    def on_shards(self, owned: int, total: int) -> None:
        """This instance owns ``owned`` of the ``total`` shards (after every rebalance)."""
        self.shards_owned.set(owned)
        self.shards.set(total)

    # --- gauges ------------------------------------------------------------------------------

    def refresh(
        self, distributor: Distributor, now_ms: int, *, summary: Summary | None = None
    ) -> None:
        """Set every gauge from the distributor as it is at ``now_ms``.

        The deadline figures and the inversions come from the statistics' summary: pass a recent
        one (``SummaryCache.at``) to keep this cheap; without one a summary is made here, which
        sorts every queue-time sample (about 10 ms at 100K tasks, 110 ms at 1M). The rest costs
        O(agents + priority levels).
        """
        for level, depth in distributor.depth_by_priority().items():
            self.queue_depth.labels(priority=priority_label(level)).set(depth)
        self.in_flight.set(distributor.in_flight)
        self.intake_paused.set(int(distributor.intake_paused))
        self._refresh_agents(distributor.agents())
        figures = summary if summary is not None else distributor.stats.summary(now_ms)
        ratio = figures.deadline_success
        self.deadline_success.set(math.nan if ratio is None else ratio)
        self._count_up("inversions", self.priority_inversions, figures.priority_inversions)
        self._count_up("met", self._deadlines_met, figures.deadline_met)
        self._count_up("missed", self._deadlines_missed, figures.deadline_missed)

    def on_scaling(self, signals: Mapping[str, PoolSignal]) -> None:
        """Set ``taskd_desired_agents`` per pool from the autoscaler's last observation; a pool
        it no longer reports loses its series."""
        for pool, signal in signals.items():
            self.desired_agents.labels(pool=pool).set(signal.desired)
        for pool in self._pools - signals.keys():
            self.desired_agents.remove(pool)
        self._pools = set(signals)

    def _count_up(self, key: str, counter: Counter, count: int) -> None:
        """Raise ``counter`` to the statistics' ``count`` (never lower it: the missed deadlines
        include tasks still waiting past theirs, which a rebalance may take away)."""
        if count > self._counted[key]:
            counter.inc(count - self._counted[key])
            self._counted[key] = count

    def _refresh_agents(self, agents: Sequence[AgentInfo]) -> None:
        """Agents by state; the per-agent series of every agent not DOWN (others removed)."""
        for state in AgentState:
            self.agents.labels(state=state.value).set(
                sum(1 for info in agents if info.state is state)
            )
        live = {info.agent_id: info for info in agents if info.state is not AgentState.DOWN}
        for agent_id, info in live.items():
            self.agent_capacity.labels(agent=agent_id).set(info.capacity)
            self.agent_in_flight.labels(agent=agent_id).set(info.in_flight)
            self.agent_utilization.labels(agent=agent_id).set(slot_load(info))
        for agent_id in self._agent_series - live.keys():
            for gauge in (self.agent_capacity, self.agent_in_flight, self.agent_utilization):
                gauge.remove(agent_id)
        self._agent_series = set(live)
        healthy = [info for info in agents if info.state is AgentState.READY and info.capacity]
        self.load_imbalance.set(load_cv([slot_load(info) for info in healthy]))

    # --- definitions -------------------------------------------------------------------------

    def _define_counters(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "taskd_tasks_received", "Tasks read from the task topics.", registry=registry
        )
        self.dispatched = Counter(
            "taskd_tasks_dispatched",
            "Assignments sent to agents, by priority (a retry or failover is dispatched again).",
            ["priority"],
            registry=registry,
        )
        self.results = Counter(
            "taskd_results",
            "Results of runs reported by agents, by status and priority (a FAILED run may be "
            "retried; a REJECTED one never ran).",
            ["status", "priority"],
            registry=registry,
        )
        self.retried = Counter(
            "taskd_tasks_retried",
            "Tasks sent to a retry tier, by tier (0-based).",
            ["tier"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "taskd_tasks_dead_lettered", "Dead letters, by reason.", ["reason"], registry=registry
        )
        self.preempted = Counter(
            "taskd_runs_preempted",
            "Runs stopped to free their slot for a more urgent task, by the stopped task's "
            "priority (it goes back to the queue, its attempt not spent).",
            ["priority"],
            registry=registry,
        )
        self.expired = Counter(
            "taskd_tasks_expired",
            "Tasks whose deadline or TTL passed before dispatch (dead-lettered EXPIRED).",
            registry=registry,
        )
        self.priority_inversions = Counter(
            "taskd_priority_inversions",
            "Dispatches while a more urgent task the agent could run waited.",
            registry=registry,
        )
        self.deadlines = Counter(
            "taskd_deadlines",
            "Deadlines decided, by outcome: met (started in time) or missed (started late, or "
            "still waiting when it passed: counted then).",
            ["outcome"],
            registry=registry,
        )
        self._deadlines_met = self.deadlines.labels(outcome="met")
        self._deadlines_missed = self.deadlines.labels(outcome="missed")
        self._dispatched = _Children(self.dispatched)
        self._results = _Children(self.results)
        self._dead = {
            reason: self.dead_lettered.labels(reason=reason.value) for reason in DeadLetterReason
        }

    def _define_histograms(self, registry: CollectorRegistry) -> None:
        self.dispatch_latency = Histogram(
            "taskd_dispatch_latency_seconds",
            "Submitted -> first dispatched, in seconds, by priority.",
            ["priority"],
            buckets=DISPATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            "taskd_queue_time_seconds",
            "Submitted -> first started, in seconds, by priority and task type.",
            ["priority", "type"],
            buckets=QUEUE_SECONDS_BUCKETS,
            registry=registry,
        )
        self.run_time = Histogram(
            "taskd_run_time_seconds",
            "Started -> finished of each run, in seconds, as the agents report it, by task type.",
            ["type"],
            buckets=RUN_SECONDS_BUCKETS,
            registry=registry,
        )
        self._dispatch_latency = _Children(self.dispatch_latency)
        self._queue_time = _Children(self.queue_time)
        self._run_time = _Children(self.run_time)

    def _define_gauges(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, documentation, labels, registry=registry)

        self.queue_depth = gauge(
            "taskd_queue_depth", "Tasks held waiting for a slot, by priority.", ["priority"]
        )
        self.in_flight = gauge("taskd_in_flight", "Tasks dispatched and not finished.")
        self.intake_paused = gauge(
            "taskd_intake_paused",
            "1 while back-pressure holds the intake (the held tasks are at their maximum and "
            "the rest wait in Kafka), else 0.",
        )
        self.agent_capacity = gauge(
            "taskd_agents_capacity", "Slots of each agent not DOWN.", ["agent"]
        )
        self.agent_in_flight = gauge(
            "taskd_agents_in_flight", "Tasks in flight on each agent not DOWN.", ["agent"]
        )
        self.agent_utilization = gauge(
            "taskd_agents_utilization", "In flight over capacity now, per agent (0..1).", ["agent"]
        )
        self.agents = gauge("taskd_agents", "Known agents, by state.", ["state"])
        self.load_imbalance = gauge(
            "taskd_load_imbalance",
            "Coefficient of variation of utilization across READY agents now.",
        )
        self.deadline_success = gauge(
            "taskd_deadline_success_ratio",
            "Deadlines met over deadlines decided since start (NaN: none yet).",
        )
        self.shards_owned = gauge("taskd_shards_owned", "Shards this dispatcher instance owns.")
        self.shards = gauge("taskd_shards", "Shards of the topic prefix (the group owns them all).")
        self.desired_agents = gauge(
            "taskd_desired_agents",
            "Agents each pool (agents of one skills+zone) should have for the tasks of this "
            "instance's shards: Little's law with headroom, backlog drain and a scale-down "
            "cool-down (sum over instances).",
            ["pool"],
        )


def load_cv(loads: Sequence[float]) -> float:
    """Population std over mean of ``loads``; 0 without loads or when their mean is 0."""
    mean = statistics.fmean(loads) if loads else 0.0
    return statistics.pstdev(loads) / mean if mean > 0 else 0.0


def _seconds(duration_ms: int) -> float:
    return max(0, duration_ms) / 1000


@dataclass(slots=True)
class MetricsServer:
    """A running ``/metrics`` endpoint; ``close`` stops it and frees its port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when 0 was asked for)."""
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


METRICS_PORT_TRIES = 64
"""Ports an agent tries from its configured one up when that one is taken, so agents started on
one host with the same settings each find one: 64, as many as a cluster of default settings has
agents (one per dispatch partition). A fixed range, not any free port, so Prometheus can scrape
it."""


def serve_metrics(
    registry: CollectorRegistry, *, port: int, host: str, tries: int = 1
) -> MetricsServer:
    """Serve ``registry`` on ``host:port`` (0: any free port), or on the next free port of the
    ``tries`` from ``port`` up when it is in use; ConfigError in one line if none can be bound."""
    last = port if port == 0 else min(port + max(tries, 1), 65536) - 1
    candidate = port
    while True:
        try:
            server, thread = start_http_server(candidate, addr=host, registry=registry)
        except OSError as error:
            if error.errno != errno.EADDRINUSE or candidate >= last:
                raise _bind_error(host, port, last, error) from error
            candidate += 1
            continue
        return MetricsServer(server, thread)


def _bind_error(host: str, first: int, last: int, error: OSError) -> ConfigError:
    tried = f"{first}" if last == first else f"{first}-{last}"
    return ConfigError(
        f"cannot serve agent metrics on {host}:{tried}: {error.strerror or error} "
        "(set TASKD_AGENT_METRICS_PORT to a free port, 0 for any free one, "
        "or TASKD_AGENT_METRICS_HOST)"
    )
