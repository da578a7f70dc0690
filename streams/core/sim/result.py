"""The figures of one simulated run: the distributor's statistics and the simulator's own.

``RunResult.to_dict`` is what ``taskd simulate --json`` prints per strategy: the headline
figures flat (``mean_queue_ms``, ``utilization``, ...), then the simulator's (``makespan_ms``,
``events``, the agent-seconds with a task running and with none, ``agent_busy_s`` and
``agent_idle_s``, the agents that ran nothing, ``agents_unused``, what is still unfinished),
then the rest of ``Summary.to_dict``.
``priority_inversions`` adds the inversions in the agents' local FIFOs (``local_inversions``,
push baselines only) to the distributor's, which sees only its own queue. No wall-clock
figure is in it, so the same scenario and seed print the same bytes.

A sharded run (``dispatcher_shards`` > 1) adds its shape (``dispatcher_shards``,
``dispatcher_instances``, ``sharding``, ``steal_ms``), the tasks stolen (``stolen``) and
``cross_shard_inversions`` (dispatches while another shard held a task of a more urgent
level; in ``priority_inversions`` too); ``arrivals_utilization`` (up to the last arrival) and
the ``steady`` figures (after the warm-up: ``steady.py``);
a run of one shard outside a comparison of variants has none of these keys, so its JSON is
what it was before shards existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streams.core.sim.agents_model import SimAgent
from streams.core.sim.steady import Steady
from streams.core.sim.tally import Tally
from streams.core.stats import Summary

_FROM_SUMMARY = (
    "dispatched",
    "finished",
    "dispatch_ms",
    "queue_ms_by_priority",
    "deadline_met",
    "deadline_missed",
    "affinity_dispatches",
    "agent_utilization",
)
"""Keys of ``Summary.to_dict`` passed through after the headline figures."""


@dataclass(frozen=True, slots=True)
class AgentFigures:
    """One simulated agent at the end of a run."""

    agent_id: str
    capacity: int
    peak_running: int
    """The most tasks it ever ran at once (never above ``capacity``)."""
    busy_ms: int
    """Slot-ms spent running."""
    available_ms: int
    """Slot-ms it was up for."""
    locally_queued: int
    local_inversions: int
    """Starts from its FIFO while a more urgent task waited there (push baselines)."""
    occupied_ms: int
    """Ms with at least one task running, however many: time it could not idle."""
    up_ms: int
    """Ms it was up for."""


def agent_figures(agents: Iterable[SimAgent], now_ms: int) -> tuple[AgentFigures, ...]:
    """The figures of every agent at ``now_ms``."""
    return tuple(
        AgentFigures(
            agent.agent_id,
            agent.capacity,
            agent.peak_running,
            agent.busy_at(now_ms),
            agent.available_ms(now_ms),
            agent.queued,
            agent.inversions,
            agent.occupied_at(now_ms),
            agent.available_ms(now_ms) // agent.capacity,  # slot-ms of all its slots
        )
        for agent in agents
    )


@dataclass(frozen=True, slots=True)
class RunResult:
    """Everything one run of one strategy produced."""

    strategy: str
    summary: Summary
    end_ms: int
    """Simulated time when the run stopped."""
    makespan_ms: int
    """When the last task ended (the stop time if some never did)."""
    finished: bool
    """Every task ended before the time limit."""
    events: int
    tasks: int
    """Tasks in the workload."""
    tally: Tally
    unfinished: Mapping[str, int]
    """Tasks not ended at the stop, by where they were (the distributor's own counts)."""
    agents: tuple[AgentFigures, ...]
    queue_ms: Sequence[int] = field(default=(), compare=False, repr=False)
    """Queue time (ms) of each task's first start, in order of start, measured by the
    simulator itself (for batch means; not in the JSON)."""
    shards: int = 1
    """Dispatcher shards (partitions of the task topics) of the run."""
    instances: int = 1
    """Dispatcher instances (one distributor each) sharing them."""
    sharding: str = "split-slots"
    """How the agents' slots were divided among them (``sharding.py``)."""
    steal_ms: int = 0
    """Work stealing between the shards every this many ms; 0: none."""
    cross_shard_inversions: int = 0
    """Dispatches while another shard held a task of a more urgent level (engine-counted)."""
    arrivals_end_ms: int = 0
    """When the last task arrived."""
    arrivals_slot_ms: tuple[int, int] = (0, 0)
    """(busy, available) slot-ms of the fleet up to the last arrival."""
    steady: Steady | None = None
    """Figures after the scenario's warm-up (``steady.py``)."""
    variant: str | None = None
    """The scenario variant the run belongs to (``None``: the scenario as written)."""
    autoscaled: bool = False
    """An autoscaler started and drained agents of one group during the run."""
    slo_met: bool | None = None
    """Whether the run met the scenario's ``slo`` (``None``: it has none)."""

    @property
    def label(self) -> str:
        """The run's name in a report: its strategy, and its variant when there are some."""
        return self.strategy if self.variant is None else f"{self.variant} / {self.strategy}"

    @property
    def accounted(self) -> int:
        """Completed + cancelled + dead-lettered + unfinished: equals ``tasks`` in a sound run."""
        tally = self.tally
        return tally.completed + tally.cancelled + tally.dead_total + sum(self.unfinished.values())

    @property
    def run_utilization(self) -> float:
        """Slot-time the agents spent running over slot-time they were up (agent-side view)."""
        available = sum(agent.available_ms for agent in self.agents)
        busy = sum(agent.busy_ms for agent in self.agents)
        return busy / available if available else 0.0

    @property
    def arrivals_utilization(self) -> float:
        """Utilization from the start to the last arrival: the offered load as the fleet ran
        it, without the drain after the last arrival (``run_utilization`` has it)."""
        busy, available = self.arrivals_slot_ms
        return busy / available if available else 0.0

    @property
    def local_inversions(self) -> int:
        """Priority inversions in the agents' own FIFOs, which the distributor cannot see."""
        return sum(agent.local_inversions for agent in self.agents)

    @property
    def priority_inversions(self) -> int:
        """The distributors' (at dispatch, each in its shard), those across shards and the
        agents' (in their FIFOs) together."""
        return (
            self.summary.priority_inversions + self.cross_shard_inversions + self.local_inversions
        )

    @property
    def agent_busy_ms(self) -> int:
        """Agent-ms with at least one task running, summed over the agents: what a fleet that
        powers down or scales in its empty agents would pay for."""
        return sum(agent.occupied_ms for agent in self.agents)

    @property
    def agent_up_ms(self) -> int:
        """Agent-ms up, summed over the agents: what the fleet is paid for (an autoscaled
        agent from the decision to start it, its boot included, to its stop)."""
        return sum(agent.up_ms for agent in self.agents)

    @property
    def agent_idle_ms(self) -> int:
        """Agent-ms up with nothing running, summed over the agents."""
        return sum(agent.up_ms - agent.occupied_ms for agent in self.agents)

    @property
    def agents_unused(self) -> int:
        """Agents that ran nothing in the whole run (they could have been left out)."""
        return sum(1 for agent in self.agents if agent.peak_running == 0)

    @property
    def peak_slot_ratio(self) -> float:
        """Max over agents of peak running over capacity (at most 1)."""
        return max((a.peak_running / a.capacity for a in self.agents), default=0.0)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures, keys in a fixed order (see the module docstring)."""
        summary = self.summary
        stats = summary.to_dict()
        head: dict[str, object] = {
            "tasks": self.tasks,
            "received": summary.tasks,
            "completed": self.tally.completed,
            "cancelled": self.tally.cancelled,
            "dead_lettered": dict(self.tally.dead_lettered),
            "mean_queue_ms": _ms(summary.mean_queue_ms),
            "p50_queue_ms": summary.p50_queue_ms,
            "p99_queue_ms": summary.p99_queue_ms,
        }
        for key in _HEADLINE_RATIOS:
            head[key] = stats[key]
        head["priority_inversions"] = self.priority_inversions
        return {**head, **self._sim_figures(), **{key: stats[key] for key in _FROM_SUMMARY}}

    def _sim_figures(self) -> dict[str, object]:
        shape: dict[str, object] = {}
        if self.shards > 1 or self.variant is not None:
            shape = {
                "arrivals_utilization": _ratio(self.arrivals_utilization),
                "steady": None if self.steady is None else self.steady.to_dict(),
                "dispatcher_shards": self.shards,
                "dispatcher_instances": self.instances,
                "sharding": self.sharding,
                "steal_ms": self.steal_ms,
                "stolen": self.tally.stolen,
                "cross_shard_inversions": self.cross_shard_inversions,
            }
        if self.tally.preempted:
            shape = {
                **shape,
                "preempted": self.tally.preempted,
                "preempted_run_s": _seconds(self.tally.preempted_run_ms),
            }
        if self.autoscaled or self.slo_met is not None:
            shape = {
                **shape,
                "agent_up_s": _seconds(self.agent_up_ms),
                "autoscaled": self.autoscaled,
                "scaled_up": self.tally.scaled_up,
                "scaled_down": self.tally.scaled_down,
                "slo_met": self.slo_met,
            }
        return {
            **shape,
            "makespan_ms": self.makespan_ms,
            "end_ms": self.end_ms,
            "all_ended": self.finished,
            "events": self.events,
            "run_utilization": _ratio(self.run_utilization),
            "agent_busy_s": _seconds(self.agent_busy_ms),
            "agent_idle_s": _seconds(self.agent_idle_ms),
            "agents_unused": self.agents_unused,
            "peak_slot_ratio": _ratio(self.peak_slot_ratio),
            "local_inversions": self.local_inversions,
            "unfinished": dict(self.unfinished),
            "counters": self.tally.to_dict(),
        }


_HEADLINE_RATIOS = (
    "utilization",
    "load_cv",
    "max_load_ratio",
    "deadline_success",
    "priority_inversions",
    "affinity_hit_rate",
)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ratio(value: float) -> float:
    return round(value, 4)


def _seconds(ms: int) -> float:
    return round(ms / 1000, 1)
