"""The dispatcher's JSON views: progress (``/status``, ``taskd status``) and context (``/context``).

Pure functions of the distributor's state and a time passed in: no I/O, no clock. The run
figures come from :meth:`Statistics.summary`, which sorts every queue-time sample it holds
(about 10 ms at 100K tasks, 110 ms at 1M): callers that serve these views often share one
:class:`SummaryCache` instead of summarizing on every request.

Human formats round to a stated precision and never raise; a missing or non-finite figure
shows as ``n/a``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Final, Literal, get_args

from streams.core.bottleneck import Load, Verdict, verdict
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.model import AgentInfo, AgentState
from streams.core.routing import RoutingConfig
from streams.core.routing.names import is_late_binding
from streams.core.routing.rules import RoutingRule
from streams.core.scaling import Autoscaler
from streams.core.scheduling import SchedulerConfig
from streams.core.stats import BREAKDOWN_KEYS, OTHER, Counts, Statistics, Summary
from streams.dispatcher_config import DispatcherConfig
from streams.errors import TaskdError
from streams.settings import Settings

AGENT_NAME: Final = "task-distributor"
"""The ``agent`` field of the progress JSON."""

RunState = Literal["distributing", "idle", "starting", "draining"]
"""The ``status`` field of the progress JSON."""
RUN_STATES: Final[frozenset[str]] = frozenset(get_args(RunState))

NOT_AVAILABLE: Final = "n/a"

_COUNT_UNITS: Final = ((1.0, ""), (1e3, "K"), (1e6, "M"), (1e9, "B"), (1e12, "T"))
_DURATION_UNITS: Final = ((1.0, "ms"), (1e3, "s"), (6e4, "m"), (3.6e6, "h"), (8.64e7, "d"))
_HUGE_COUNT: Final = 10**15
"""From here counts are shown in whole T with integer arithmetic (a float would overflow)."""


# --- human formats ---------------------------------------------------------------------------


def human_count(count: int) -> str:
    """A count as 950, 1.2K, 45K, 1.3M (K, M, B, T).

    Exact below 1,000; above, one decimal below 10 of the unit and none from 10 on, so
    within 5% of the count.
    """
    if count < 0:
        return "-" + human_count(-count)
    if count >= _HUGE_COUNT:
        return f"{(count + 5 * 10**11) // 10**12}T"
    return _scaled(float(count), _COUNT_UNITS)


def human_duration(ms: float | None) -> str:
    """Milliseconds as 230ms, 1.4s, 14s, 2m, 1.5h, 3d; ``n/a`` when missing or not finite.

    One decimal below 10 of the unit, none from 10 on: within 0.05 ms or 5%.
    """
    if ms is None or not math.isfinite(ms):
        return NOT_AVAILABLE
    if ms < 0:
        return "-" + human_duration(-ms)
    return _scaled(ms, _DURATION_UNITS)


def human_percent(ratio: float | None) -> str:
    """A ratio as a whole percentage (0.07 -> 7%); ``n/a`` when missing or not finite.

    Within half a percentage point. Between 0 and 1% and between 99 and 100% one decimal is
    shown instead (0.4%, 99.6%), so ``0%`` and ``100%`` appear only for values that reach them.
    """
    percent = math.nan if ratio is None else ratio * 100
    if not math.isfinite(percent):
        return NOT_AVAILABLE
    if 0 < percent < 1 or 99 < percent < 100:
        shown = min(max(round(percent, 1), 0.1), 99.9)
        return f"{_plain(shown)}%"
    return f"{round(percent)}%"


def _scaled(value: float, units: Sequence[tuple[float, str]]) -> str:
    """``value`` (>= 0) in the smallest unit whose rounded figure stays below the next unit."""
    for index, (size, suffix) in enumerate(units):
        shown = _rounded(value / size)
        following = units[index + 1][0] if index + 1 < len(units) else math.inf
        if shown * size < following:
            return f"{_plain(shown)}{suffix}"
    raise AssertionError("unreachable: the last unit has no upper bound")


def _rounded(value: float) -> float:
    return round(value, 1) if value < 10 else float(round(value))


def _plain(value: float) -> str:
    """1.0 -> "1", 1.25 -> "1.2" (one decimal at most), never an exponent."""
    return str(int(value)) if value.is_integer() else f"{value:.1f}"


# --- shared summary --------------------------------------------------------------------------


class SummaryCache:
    """The statistics' summary, recomputed at most every ``max_age_ms`` (of the caller's clock).

    Lets ``/status``, ``/context`` and the metrics refresh share one summary: it costs a sort
    of every queue-time sample (O(n) per call once new samples came in).
    """

    def __init__(self, stats: Statistics, *, max_age_ms: int = 5_000) -> None:
        if max_age_ms < 0:
            raise TaskdError(f"max_age_ms must be >= 0, got {max_age_ms}")
        self._stats = stats
        self._max_age_ms = max_age_ms
        self._summary: Summary | None = None

    def at(self, now_ms: int) -> Summary:
        """A summary made at most ``max_age_ms`` before ``now_ms`` (a new one if time ran back)."""
        last = self._summary
        if last is None or not 0 <= now_ms - last.at_ms < self._max_age_ms:
            last = self._summary = self._stats.summary(now_ms)
        return last


# --- progress --------------------------------------------------------------------------------


def run_state(distributor: Distributor, *, starting: bool, draining: bool) -> RunState:
    """The progress status: starting (recovering), draining (stopping), else busy or idle."""
    if starting:
        return "starting"
    if draining:
        return "draining"
    busy = distributor.held > 0 or distributor.in_flight > 0
    return "distributing" if busy else "idle"


def progress_view(
    distributor: Distributor,
    now_ms: int,
    *,
    state: RunState,
    summary: Summary | None = None,
    bottleneck: Verdict | None = None,
) -> dict[str, object]:
    """The progress JSON (README, "Watching it"), plus exact figures in ``details``.

    ``summary`` (from a :class:`SummaryCache`) spares a new one; else it is made at ``now_ms``.
    ``bottleneck``: the verdict with the dispatcher's loop measured (``bottleneck_of``); else
    one without it.
    """
    if state not in RUN_STATES:
        raise TaskdError(f"status must be one of {sorted(RUN_STATES)}, got {state!r}")
    figures = summary if summary is not None else distributor.stats.summary(now_ms)
    found = bottleneck if bottleneck is not None else bottleneck_of(distributor)
    return {
        "agent": AGENT_NAME,
        "status": state,
        "progress": {
            "tasks_distributed": human_count(figures.dispatched),
            "avg_queue_time": human_duration(figures.mean_queue_ms),
            "load_variance": human_percent(figures.load_cv),
            "deadline_success": human_percent(figures.deadline_success),
        },
        "details": {**_details(distributor, figures), "bottleneck": found.to_dict()},
    }


def bottleneck_of(
    distributor: Distributor, *, loop_busy: float | None = None, window_s: float = 10.0
) -> Verdict:
    """What limits throughput now (``streams.core.bottleneck``), from the distributor's state
    and, when measured, the share ``loop_busy`` of the last ``window_s`` the loop was busy."""
    return verdict(
        Load(
            agents=distributor.agents(),
            demand=distributor.stats.demand(),
            held=distributor.held,
            max_held=distributor.config.scheduler.max_held,
            intake_paused=distributor.intake_paused,
            without_capable_agent=distributor.without_capable_agent(),
            loop_busy=loop_busy,
            loop_window_s=window_s,
            zone_strict=distributor.config.routing.zone_strict,
        )
    )


class LoopLoad:
    """How busy the dispatcher's event loop was over the last ``window_s``: the CPU time of the
    loop's thread over the wall time between samples the loop itself takes (about once a
    second). Cheap: two clock reads per sample, no hook on every callback."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, wall_s: float, cpu_s: float) -> None:
        """The clocks now: a monotonic wall clock and the loop thread's CPU time."""
        samples = self._samples
        samples.append((wall_s, cpu_s))
        while len(samples) > 2 and samples[1][0] <= wall_s - self.window_s:
            samples.popleft()

    def busy(self) -> float | None:
        """Busy share (0..1) since the oldest sample of the window; None before two samples."""
        if len(self._samples) < 2:
            return None
        (wall0, cpu0), (wall1, cpu1) = self._samples[0], self._samples[-1]
        if wall1 <= wall0:
            return None
        return min(1.0, max(0.0, (cpu1 - cpu0) / (wall1 - wall0)))


def scale_view(scaler: Autoscaler) -> dict[str, object]:
    """``/scale``: per pool, the agents wanted (``taskd_desired_agents``), those running and
    the inputs used, as of the scaler's last observation (the gauges' refresh)."""
    return {
        "agent": AGENT_NAME,
        "at_ms": scaler.at_ms,
        "config": asdict(scaler.config),
        "pools": {name: signal.to_dict() for name, signal in sorted(scaler.signals.items())},
    }


def _details(distributor: Distributor, figures: Summary) -> dict[str, object]:
    """Exact figures: counts, ms rounded to 0.1 and ratios to 1e-4 (as ``Summary.to_dict``)."""
    exact = figures.to_dict()
    agents = distributor.agents()
    ready = sum(1 for info in agents if info.state is AgentState.READY)
    return {
        "at_ms": figures.at_ms,
        "tasks": figures.tasks,
        "dispatched": figures.dispatched,
        "completed": figures.completed,
        "finished": exact["finished"],
        "dead_lettered": exact["dead_lettered"],
        "held": distributor.held,
        "behind": distributor.behind,
        "held_without_capable_agent": distributor.without_capable_agent(),
        "in_flight": distributor.in_flight,
        "agents": {"ready": ready, "total": len(agents)},
        "utilization": exact["utilization"],
        "load_cv": exact["load_cv"],
        "queue_ms": exact["queue_ms"],
        "dispatch_ms": exact["dispatch_ms"],
        "deadline_success": exact["deadline_success"],
        "priority_inversions": figures.priority_inversions,
    }


# --- context ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One goal of the distribution: ``measure`` must stay below or above ``limit``."""

    name: str
    measure: str
    below: bool
    limit: float
    unit: Literal["ms", "ratio"]
    goal: str


TARGETS: Final[tuple[Target, ...]] = (
    Target("dispatch_latency", "p99 dispatch latency", True, 50, "ms", "< 50 ms"),
    Target("load_variance", "CV of agent utilization", True, 0.10, "ratio", "< 10%"),
    Target("completion", "succeeded over ended tasks", False, 0.99, "ratio", "> 99%"),
    Target("deadline_success", "deadlines met over decided", False, 0.95, "ratio", "> 95%"),
    Target("utilization", "busy over available slot-time", False, 0.80, "ratio", "> 80%"),
)


CapacityOf = Callable[[str], int | None]
"""The capacity an agent announced, by its id (``None``: not known)."""


def context_view(
    distributor: Distributor,
    settings: Settings,
    *,
    now_ms: int,
    summary: Summary | None = None,
    capacity_of: CapacityOf | None = None,
    dispatcher: DispatcherConfig | None = None,
) -> dict[str, object]:
    """The distribution context: volumes, agents, dead letters by reason, breakdowns by
    priority, type and tenant, priority scheme, targets, constraints, strategy, and the
    dispatcher's settings in effect (``dispatcher``: its ``[dispatcher]`` table, flags
    applied).

    ``capacity_of`` gives the capacity each agent announced (``AgentSlots.capacity``); without
    it the core's slots stand in for it. Settings are picked field by field: nothing secret
    (credentials, servers) is shown.
    """
    figures = summary if summary is not None else distributor.stats.summary(now_ms)
    config = distributor.config
    return {
        "agent": AGENT_NAME,
        "at_ms": figures.at_ms,
        "volumes": _volumes(distributor, figures),
        "agents": [
            _agent(
                info,
                distributor.heard_at(info.agent_id),
                now_ms,
                info.capacity if capacity_of is None else capacity_of(info.agent_id),
            )
            for info in distributor.agents()
        ],
        "dead_letters": dict(figures.dead_lettered),
        "breakdown": _breakdown(figures),
        "priorities": _priorities(config.scheduler, settings),
        "targets": _targets(figures),
        "constraints": _constraints(config, settings),
        "strategy": _strategy(config.routing),
        "dispatcher": None if dispatcher is None else dispatcher.shown(),
    }


def _volumes(distributor: Distributor, figures: Summary) -> dict[str, object]:
    depth = distributor.depth_by_priority()
    return {
        "received": figures.tasks,
        "dispatched": figures.dispatched,
        "completed": figures.completed,
        "dead_lettered": sum(figures.dead_lettered.values()),
        "held": distributor.held,
        "held_by_priority": {f"p{level}": count for level, count in sorted(depth.items())},
        "behind": distributor.behind,
        "in_flight": distributor.in_flight,
        "intake_paused": distributor.intake_paused,
    }


def _agent(
    info: AgentInfo, heard_at_ms: int | None, now_ms: int, capacity: int | None
) -> dict[str, object]:
    """One agent's capabilities and load.

    ``capacity``: the tasks it runs at once, as it announced (None: not known); ``slots``: the
    slots this instance counts for it (its share of capacity plus prefetch: more than the
    capacity with prefetch, less with several dispatcher instances); ``in_flight``: the tasks
    this instance dispatched to it and not finished (prefetched ones included); ``load``:
    in flight over slots, at most 1. ``task_types``: the types it has handlers for (None: every
    type); ``heartbeat_age_ms``: how long ago its last heartbeat came in (None: not known)."""
    return {
        "id": info.agent_id,
        "state": info.state.value,
        "capacity": capacity,
        "slots": info.capacity,
        "in_flight": info.in_flight,
        "load": round(slot_load(info), 4),
        "task_types": None if info.task_types is None else sorted(info.task_types),
        "heartbeat_age_ms": None if heard_at_ms is None else max(0, now_ms - heard_at_ms),
        "skills": sorted(info.skills),
        "zone": info.zone,
        "weight": info.weight,
        "cost_per_task": info.cost_per_task,
        "ewma_run_ms": None if info.ewma_run_ms is None else round(info.ewma_run_ms, 1),
        "ewma_success": round(info.ewma_success, 4),
        "labels": dict(sorted(info.labels.items())),
    }


def _breakdown(figures: Summary) -> dict[str, object]:
    """Tasks since the start by priority, task type and tenant (the first ``keys`` types and
    tenants seen by name, the rest under ``other``)."""
    return {
        "keys": BREAKDOWN_KEYS,
        "other": OTHER,
        "by_priority": {
            f"p{level}": _counts(c) for level, c in sorted(figures.by_priority.items())
        },
        "by_type": _named(figures.by_type),
        "by_tenant": _named(figures.by_tenant),
    }


def _named(groups: Mapping[str, Counts]) -> dict[str, object]:
    return {name: _counts(counts) for name, counts in sorted(groups.items())}


def _counts(counts: Counts) -> dict[str, object]:
    """``queue_ms_total`` is exact, so a reader can take the mean queue time of any interval
    between two views (``mean_queue_ms`` is since the start, rounded to 0.1)."""
    mean = counts.mean_queue_ms
    return {
        "received": counts.received,
        "started": counts.started,
        "queue_ms_total": counts.queue_ms_total,
        "mean_queue_ms": None if mean is None else round(mean, 1),
        "completed": counts.completed,
        "dead_lettered": counts.dead_lettered,
    }


def slot_load(info: AgentInfo) -> float:
    """Busy share of an agent's slots now: in flight over capacity, in [0, 1] (0: no slots)."""
    return min(info.in_flight, info.capacity) / info.capacity if info.capacity > 0 else 0.0


def _priorities(scheduler: SchedulerConfig, settings: Settings) -> dict[str, object]:
    return {
        "levels": scheduler.levels,
        "most_urgent": 0,
        "topics": settings.topics.all_tasks(),
        "aging_ms": scheduler.aging_ms,
        "escalation_ms": scheduler.escalation_ms,
        "reserved_top_share": scheduler.reserved_top_share,
    }


def _targets(figures: Summary) -> dict[str, object]:
    ended = figures.completed + sum(figures.dead_lettered.values())
    values: dict[str, float | None] = {
        "dispatch_latency": figures.p99_dispatch_ms,
        "load_variance": figures.load_cv,
        "completion": figures.completed / ended if ended else None,
        "deadline_success": figures.deadline_success,
        "utilization": figures.utilization,
    }
    return {target.name: _judged(target, values[target.name]) for target in TARGETS}


def _judged(target: Target, value: float | None) -> dict[str, object]:
    met: bool | None = None
    if value is not None:
        met = value < target.limit if target.below else value > target.limit
    return {
        "goal": target.goal,
        "measure": target.measure,
        "limit": target.limit,
        "unit": target.unit,
        "value": None if value is None else round(value, 4),
        "met": met,
    }


def _constraints(config: DistributorConfig, settings: Settings) -> dict[str, object]:
    scheduler = config.scheduler
    health = config.health
    return {
        "max_held": scheduler.max_held,
        "resume_at": scheduler.resume_threshold,
        "tenant_weights": dict(sorted(scheduler.tenant_weights.items())),
        "tenant_max_in_flight": dict(sorted(scheduler.tenant_max_in_flight.items())),
        "tenant_max_rate_per_s": dict(sorted(scheduler.tenant_max_rate_per_s.items())),
        "tenant_burst": dict(sorted(scheduler.tenant_burst.items())),
        "no_capable_agent_timeout_ms": scheduler.no_capable_agent_timeout_ms,
        "lease_ms": config.lease_ms,
        "retry_backoffs_ms": list(config.retry_backoffs_ms),
        "heartbeat_interval_ms": health.heartbeat_interval_ms,
        "suspect_after_ms": health.suspect_after_ms,
        "down_after_ms": health.down_after_ms,
        "max_agents": settings.dispatch_partitions,
        "shards": settings.shards,
    }


def _strategy(routing: RoutingConfig) -> dict[str, object]:
    return {
        "name": routing.strategy,
        "late_binding": is_late_binding(routing.strategy),
        "zone_strict": routing.zone_strict,
        "hash_load_factor": routing.hash_load_factor,
        "rules": [_rule(rule) for rule in routing.rules],
    }


def _rule(rule: RoutingRule) -> dict[str, object]:
    return {
        "match_type": rule.match_type,
        "match_tenant": rule.match_tenant,
        "match_header": None if rule.match_header is None else list(rule.match_header),
        "pool": None if rule.pool is None else sorted(rule.pool),
        "strategy": rule.strategy,
        "fallback": [step.value for step in rule.fallback],
    }
