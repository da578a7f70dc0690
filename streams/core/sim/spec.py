"""The parts of a scenario: agent groups, the task mix and the arrival process (frozen values).

Units: times in integer milliseconds, rates in tasks per second, work in abstract units (an
agent of speed 1 runs one unit in one second, so a task of ``w`` units takes ``1000 * w /
speed`` ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONSTANT = "constant"
EXPONENTIAL = "exponential"
LOGNORMAL = "lognormal"
WORK_DISTRIBUTIONS: tuple[str, ...] = (CONSTANT, EXPONENTIAL, LOGNORMAL)

POISSON = "poisson"
BURSTS = "bursts"
ARRIVAL_PROCESSES: tuple[str, ...] = (POISSON, CONSTANT, BURSTS)

UNIFORM = "uniform"
ZIPF = "zipf"
KEY_DISTRIBUTIONS: tuple[str, ...] = (UNIFORM, ZIPF)


@dataclass(frozen=True, slots=True)
class WorkSpec:
    """How much work one task of a class is: a distribution with its mean (units)."""

    distribution: str
    mean: float
    """Mean work in units (> 0)."""
    sigma: float = 0.0
    """Lognormal only: the standard deviation of the work's logarithm."""

    @property
    def mu(self) -> float:
        """Lognormal only: the mean of the logarithm that gives the requested ``mean``."""
        return math.log(self.mean) - self.sigma * self.sigma / 2


@dataclass(frozen=True, slots=True)
class TaskClass:
    """One entry of the task mix: its share of the arrivals and what its tasks look like."""

    share: float
    """Probability that an arrival is of this class (the shares sum to 1)."""
    task_type: str
    priority: int
    work: WorkSpec
    deadline_ms: int | None = None
    """Relative: the task must start within this many ms of its submission."""
    ttl_ms: int | None = None
    """Relative: the task must not be dispatched later than this many ms after submission."""
    required_skills: frozenset[str] = frozenset()
    tenants: tuple[str, ...] = ("default",)
    """Each task's tenant is drawn uniformly from these."""
    zone: str | None = None
    max_attempts: int = 3
    affinity_keys: int = 0
    """Distinct affinity keys (0: tasks have none)."""
    affinity: str = UNIFORM
    """How keys are drawn: ``uniform`` or ``zipf`` (key of rank k with weight 1 / k**s)."""
    zipf_exponent: float = 1.0
    ordering_keys: int = 0
    """Distinct ordering keys its tasks draw from, uniformly (0: none): the tasks sharing one
    run one at a time, in arrival order (``streams.core.ordering``)."""


@dataclass(frozen=True, slots=True)
class AgentGroup:
    """``count`` identical agents named ``<name>-<index>``."""

    name: str
    count: int
    capacity: int
    """Slots per agent: tasks it runs at once."""
    speed: float
    """Work units per second per slot."""
    skills: frozenset[str] = frozenset()
    zone: str | None = None
    weight: float = 1.0
    cost_per_task: float = 0.0
    failure_probability: float = 0.0
    """Probability that a run ends RETRYABLE instead of SUCCEEDED."""
    crash_at_ms: int | None = None
    """Every agent of the group crashes then: it loses its runs and stops heartbeating."""
    recover_at_ms: int | None = None
    """It comes back (empty, heartbeating) then; ``None``: never."""
    prefetch: int = 0
    """Tasks an agent takes beyond its slots, as a live dispatcher's prefetch share gives a
    real agent: it announces ``capacity + prefetch`` slots, the extra tasks wait at the agent
    and start most urgent first. 0: the push model's plain FIFO (see ``agents_model``)."""
    cost_per_hour: float = 1.0
    """What one agent of the group costs per hour, in any currency (``taskd plan`` adds it up
    over the fleet); 1 by default, so that a plan's cost counts agents."""
    ids: tuple[str, ...] = ()
    """The agents' ids, ``count`` of them; empty (as in scenario files): ``<name>-001``,
    ``<name>-002``, ... A driver replaying a live fleet gives the live ids, because routing
    places keys by id (consistent hashing), so other ids would send keys elsewhere."""

    @property
    def work_rate(self) -> float:
        """Work units per second the whole group can run."""
        return self.count * self.capacity * self.speed

    def agent_ids(self) -> tuple[str, ...]:
        """The ids of the group's agents: ``ids``, or ``<name>-<index>`` from 001."""
        return self.ids or tuple(f"{self.name}-{index:03d}" for index in range(1, self.count + 1))


@dataclass(frozen=True, slots=True)
class RatePhase:
    """One phase of piecewise arrivals: ``rate_per_s`` for ``duration_ms``."""

    duration_ms: int
    rate_per_s: float


@dataclass(frozen=True, slots=True)
class Arrivals:
    """The arrival process: ``process`` at ``rate_per_s``, for ``tasks`` or ``duration_ms``."""

    process: str
    rate_per_s: float
    """With ``phases``: their mean rate, weighted by their durations."""
    tasks: int | None = None
    """Generate exactly this many tasks; else as many as arrive within ``duration_ms``."""
    duration_ms: int | None = None
    burst_size: int = 1
    """``bursts`` only: tasks arriving together; bursts come as a Poisson process."""
    phases: tuple[RatePhase, ...] = ()
    """Rates that change over time (a load that rises and falls): each phase's process runs at
    its own rate for its duration, one after the other; ``duration_ms`` is their sum."""


@dataclass(frozen=True, slots=True)
class AutoscaleSpec:
    """An autoscaler following the signal of ``streams.core.scaling`` for one agent group:
    every ``interval_ms`` it asks for the pool's desired agents, starts the missing ones (each
    takes work ``startup_ms`` later, and counts as up from the decision: it is paid while it
    boots) and drains the ones too many, newest first (they take no more work and stop once
    idle). The group's ``count`` is the fixed fleet it is compared with; an autoscaled run
    starts with ``initial`` agents."""

    group: str
    initial: int = 1
    startup_ms: int = 30_000
    interval_ms: int = 15_000
    """How often the autoscaler reads the signal (KEDA polls every 30 s by default)."""
    min_agents: int = 1
    max_agents: int | None = None
    headroom: float = 0.2
    drain_s: float = 60.0
    window_ms: int = 60_000
    cooldown_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to run the scenario in a comparison: its dispatcher shards and their model.

    A scenario with variants runs every strategy once per variant, on the same workload, so
    that one report compares, say, one global scheduler with 100 shards.
    """

    name: str
    dispatcher_shards: int
    sharding: str
    steal_ms: int = 0
    """Work stealing between the instances every this many ms (``stealing.py``); 0: none."""
    dispatcher_instances: int = 0
    """Instances sharing the shards (range assignment); 0: one per shard."""
    autoscale: bool = False
    """Run with the scenario's ``[autoscale]`` (its group starts small and follows the
    signal); False: the fleet as written."""
    preempt: bool = True
    """Run with the scenario's ``[preemption]``; False: without (no run is stopped)."""
