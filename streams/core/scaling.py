"""The autoscaling signal: how many agents each pool should have, from what the core measures.

Theory of operation. A *pool* is a set of interchangeable agents: those announcing the same
skills and zone (heartbeats carry no pool name, so it is derived: ``pool_name``, e.g. ``gpu@eu``,
``default@us``, ``default``). An autoscaler runs one deployment per pool, started with those
skills and that zone.

Demand comes from the statistics, by *need* (required skills, preferred zone: ``Statistics.
demand``). Each need's tasks go to the pools able to run them (skills a superset of the need's;
those in the need's zone first, only those with ``zone_strict``), split in proportion to the
slots the pools have now, as the router spreads them; a need no pool can run makes a pool of its
own, named after the need, with 0 agents: the signal asks for agents from zero.

Per pool, with ``λ`` the arrival rate over the last ``window_ms``, ``S`` the mean run time (the
pool's agents' recent run times), ``B`` the tasks waiting, ``F`` the tasks in flight and ``c``
the slots one agent has (as announced)::

    busy slots  = max(λ·S, F)                    Little's law: L = λW; never below what runs
    drain slots = B·S / drain_s                  the backlog gone within drain_s
    raw         = ceil((busy + drain) · (1 + headroom) / c)

Hysteresis: ``desired`` is the largest raw figure of the last ``cooldown_ms``, so a rise is
followed at once and a fall only once the demand has stayed lower for the whole cool-down
(what Kubernetes calls a scale-down stabilization window); then bounded by ``min_agents`` and
``max_agents``. Pure: time comes in as ``now_ms``, nothing else is read.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from streams.core.model import AgentInfo, AgentState
from streams.core.stats import Demand, Need
from streams.errors import ConfigError

DEFAULT_POOL = "default"
"""The skills part of the name of a pool of agents with no skill."""


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    """How the signal turns demand into agents (see the module docstring)."""

    headroom: float = 0.2
    """Extra capacity over the demand: 0.2 keeps the agents about 83% busy."""
    drain_s: float = 60.0
    """The backlog should be gone within this many seconds."""
    window_ms: int = 60_000
    """The arrival rate is measured over this long."""
    cooldown_ms: int = 300_000
    """Scale down only after the demand stayed lower for this long."""
    min_agents: int = 0
    max_agents: int | None = None
    default_run_ms: float = 1_000.0
    """Run time assumed for a pool none of whose agents (nor any other) finished a task yet."""
    default_slots: int = 1
    """Slots per agent assumed for a pool with no agent yet (scaling from zero)."""

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.headroom) and self.headroom >= 0):
            problems.append(f"headroom must be >= 0, got {self.headroom!r}")
        if not (math.isfinite(self.drain_s) and self.drain_s > 0):
            problems.append(f"drain_s must be > 0, got {self.drain_s!r}")
        if self.window_ms < 1 or self.cooldown_ms < 0:
            problems.append("window_ms must be >= 1 and cooldown_ms >= 0")
        if self.min_agents < 0 or (
            self.max_agents is not None and self.max_agents < self.min_agents
        ):
            problems.append(
                f"need 0 <= min_agents <= max_agents, got {self.min_agents}, {self.max_agents}"
            )
        if not self.default_run_ms > 0 or self.default_slots < 1:
            problems.append("default_run_ms must be > 0 and default_slots >= 1")
        if problems:
            raise ConfigError("scaling: " + "; ".join(problems))


def pool_name(skills: frozenset[str], zone: str | None) -> str:
    """``gpu+ssd@eu``: the skills sorted (``default`` for none), then ``@zone`` if any."""
    name = "+".join(sorted(skills)) or DEFAULT_POOL
    return f"{name}@{zone}" if zone else name


def pool_of(agent: AgentInfo) -> str:
    """The pool of an agent: its skills and zone."""
    return pool_name(agent.skills, agent.zone)


def desired_agents(
    *,
    rate_per_s: float,
    run_ms: float,
    backlog: float,
    in_flight: float,
    slots_per_agent: float,
    config: ScalingConfig,
) -> int:
    """Agents for this demand, before hysteresis and bounds (the module's formula)."""
    run_s = run_ms / 1000
    busy = max(rate_per_s * run_s, in_flight)
    drain = backlog * run_s / config.drain_s
    slots = (busy + drain) * (1 + config.headroom)
    # A hair below an integer is float noise, not a reason for one more agent.
    return max(0, math.ceil(slots / slots_per_agent - 1e-9))


@dataclass(frozen=True, slots=True)
class PoolSignal:
    """One pool's figures at one observation; ``to_dict`` for ``/scale``."""

    pool: str
    desired: int
    """What to run: ``raw`` after hysteresis and bounds (``taskd_desired_agents``)."""
    raw: int
    """What the demand of this moment alone asks for."""
    current: int
    """Agents of the pool heard from and not DOWN nor DRAINING."""
    rate_per_s: float
    run_ms: float
    backlog: float
    in_flight: int
    slots_per_agent: float

    def to_dict(self) -> dict[str, object]:
        return {
            "desired": self.desired,
            "current": self.current,
            "raw": self.raw,
            "inputs": {
                "rate_per_s": round(self.rate_per_s, 3),
                "run_ms": round(self.run_ms, 1),
                "backlog": round(self.backlog, 1),
                "in_flight": self.in_flight,
                "slots_per_agent": round(self.slots_per_agent, 2),
            },
        }


CapacityOf = Callable[[str], int | None]
"""The capacity an agent announced, by id (None: not known: the core's slots stand in)."""


@dataclass(slots=True)
class _Pool:
    agents: list[AgentInfo] = field(default_factory=list)
    slots: int = 0
    rate_per_s: float = 0.0
    backlog: float = 0.0


class Autoscaler:
    """Keeps the history the signal needs (arrival counts, raw figures) and gives each pool's
    signal at each ``observe``; call it regularly (every second or every few)."""

    def __init__(self, config: ScalingConfig | None = None, *, zone_strict: bool = False) -> None:
        self.config = config or ScalingConfig()
        self.zone_strict = zone_strict
        self._arrivals: deque[tuple[int, dict[Need, int]]] = deque()
        self._raw: dict[str, deque[tuple[int, int]]] = {}
        self.signals: dict[str, PoolSignal] = {}
        """The last observation's, by pool name."""
        self.at_ms: int | None = None

    def observe(
        self,
        now_ms: int,
        agents: Sequence[AgentInfo],
        demand: Mapping[Need, Demand],
        capacity_of: CapacityOf | None = None,
    ) -> dict[str, PoolSignal]:
        """Every pool's signal at ``now_ms``: the agents' pools, and those of needs no agent
        can serve; a pool seen before stays until its desired figure is back to the minimum."""
        rates = self._rates(now_ms, demand)
        live = [a for a in agents if a.state not in (AgentState.DOWN, AgentState.DRAINING)]
        pools: dict[str, _Pool] = {}
        for agent in live:
            pool = pools.setdefault(pool_of(agent), _Pool())
            pool.agents.append(agent)
            pool.slots += _announced(agent, capacity_of)
        for need, counts in demand.items():
            for name, share in _split(need, pools, self.zone_strict):
                pool = pools.setdefault(name, _Pool())
                pool.rate_per_s += share * rates.get(need, 0.0)
                pool.backlog += share * counts.waiting
        fleet_run_ms = _mean_run_ms(live)
        signals = {}
        for name in sorted(set(pools) | set(self._raw)):
            signal = self._signal(name, pools.get(name, _Pool()), now_ms, fleet_run_ms)
            if signal is not None:
                signals[name] = signal
        self.signals, self.at_ms = signals, now_ms
        return signals

    def _signal(
        self, name: str, pool: _Pool, now_ms: int, fleet_run_ms: float | None
    ) -> PoolSignal | None:
        config = self.config
        run_ms = _mean_run_ms(pool.agents) or fleet_run_ms or config.default_run_ms
        slots_per_agent = pool.slots / len(pool.agents) if pool.agents else config.default_slots
        in_flight = sum(agent.in_flight for agent in pool.agents)
        raw = desired_agents(
            rate_per_s=pool.rate_per_s,
            run_ms=run_ms,
            backlog=pool.backlog,
            in_flight=in_flight,
            slots_per_agent=max(slots_per_agent, 1e-9),
            config=config,
        )
        history = self._raw.setdefault(name, deque())
        history.append((now_ms, raw))
        while history and history[0][0] < now_ms - config.cooldown_ms:
            history.popleft()
        desired = max(max(figure for _, figure in history), config.min_agents)
        if config.max_agents is not None:
            desired = min(desired, config.max_agents)
        if not pool.agents and desired <= config.min_agents and not pool.backlog:
            del self._raw[name]  # a pool of nothing that asks for nothing: forget it
            if not config.min_agents:
                return None
        return PoolSignal(
            pool=name,
            desired=desired,
            raw=raw,
            current=len(pool.agents),
            rate_per_s=pool.rate_per_s,
            run_ms=run_ms,
            backlog=pool.backlog,
            in_flight=in_flight,
            slots_per_agent=slots_per_agent,
        )

    def _rates(self, now_ms: int, demand: Mapping[Need, Demand]) -> dict[Need, float]:
        """Tasks received per second by need, over the oldest sample of the window."""
        counts = {need: d.received for need, d in demand.items()}
        samples = self._arrivals
        if samples and now_ms < samples[-1][0]:
            samples.clear()  # time ran back (a restart): start again
        samples.append((now_ms, counts))
        while len(samples) > 2 and samples[1][0] <= now_ms - self.config.window_ms:
            samples.popleft()
        first_ms, first = samples[0]
        if now_ms <= first_ms:
            return {}
        seconds = (now_ms - first_ms) / 1000
        # A count below the one before means the statistics restarted: no rate from it.
        return {need: max(0, n - first.get(need, 0)) / seconds for need, n in counts.items()}


def _announced(agent: AgentInfo, capacity_of: CapacityOf | None) -> int:
    announced = None if capacity_of is None else capacity_of(agent.agent_id)
    return agent.capacity if announced is None else announced


def _mean_run_ms(agents: Sequence[AgentInfo]) -> float | None:
    known = [agent.ewma_run_ms for agent in agents if agent.ewma_run_ms is not None]
    return sum(known) / len(known) if known else None


def _split(need: Need, pools: Mapping[str, _Pool], zone_strict: bool) -> list[tuple[str, float]]:
    """The pools serving ``need`` and each one's share of its tasks (summing to 1)."""
    skills, zone = need
    capable = {
        name: pool
        for name, pool in pools.items()
        if pool.agents and skills <= pool.agents[0].skills
    }
    in_zone = {name: pool for name, pool in capable.items() if pool.agents[0].zone == zone}
    if zone is not None and (in_zone or zone_strict):
        capable = in_zone
    if not capable:
        return [(pool_name(skills, zone), 1.0)]
    total = sum(pool.slots for pool in capable.values())
    if total <= 0:
        first = min(capable, key=lambda name: (len(capable[name].agents[0].skills), name))
        return [(first, 1.0)]
    return [(name, pool.slots / total) for name, pool in sorted(capable.items())]
