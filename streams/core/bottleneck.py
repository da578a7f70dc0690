"""What limits throughput now: one verdict with the figure behind it, from figures already kept.

Checked in this order, the first that holds is the verdict (``kind``):

1. ``dispatcher_cpu``: the dispatcher's loop was busy at least ``CPU_BUSY`` of the last window
   (measured by the adapter, which passes the share in): it cannot read, decide and write any
   faster, whatever the agents could take. Add a dispatcher instance.
2. ``intake``: back-pressure paused reading (``max_held`` tasks held) while agents have free
   slots: the held tasks cannot go to them (they need agents that are full or absent), and the
   tasks they could run wait unread in Kafka behind them.
3. ``slow_agent``: a READY agent running tasks whose recent run time is at least
   ``SLOW_FACTOR`` times the median of its pool's (same skills and zone, at least
   ``SLOW_PEERS`` agents with a run time known): its tasks take that much longer.
4. ``agents``: tasks wait for a need (skills, zone) whose capable READY agents have no free
   slot, or no capable agent at all (also held tasks of a type no agent has a handler for):
   the need with the most tasks waiting is named. Add agents of that pool.
5. ``none``: agents have free slots and nothing waits for a full need.

Pure: the caller passes what the distributor and the statistics show now.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from streams.core.model import AgentInfo, AgentState
from streams.core.scaling import pool_of
from streams.core.stats import Demand, Need

CPU_BUSY = 0.9
"""Share of the window the dispatcher's loop must be busy for a CPU verdict."""
SLOW_FACTOR = 3.0
"""Run time over the pool's median from which an agent is slow."""
SLOW_PEERS = 3
"""Agents with a known run time a pool needs before one of them can be called slow."""

DISPATCHER_CPU = "dispatcher_cpu"
INTAKE = "intake"
SLOW_AGENT = "slow_agent"
AGENTS = "agents"
NONE = "none"
KINDS = (DISPATCHER_CPU, INTAKE, SLOW_AGENT, AGENTS, NONE)


@dataclass(frozen=True, slots=True)
class Load:
    """What the dispatcher sees now (see ``verdict``)."""

    agents: Sequence[AgentInfo]
    demand: Mapping[Need, Demand]
    held: int = 0
    max_held: int = 100_000
    intake_paused: bool = False
    without_capable_agent: Mapping[str, int] = field(default_factory=dict)
    """Held tasks no live agent can run, by task type (``Distributor.without_capable_agent``)."""
    loop_busy: float | None = None
    """Share of the last ``loop_window_s`` the dispatcher's loop was busy (None: not measured)."""
    loop_window_s: float = 10.0
    zone_strict: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """``kind`` (one of ``KINDS``), the sentence with its figure, and the figures alone."""

    kind: str
    text: str
    figures: Mapping[str, object]

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "verdict": self.text, "figures": dict(self.figures)}


def verdict(load: Load) -> Verdict:
    """The bottleneck now (the module docstring gives the rules and their order)."""
    ready = [agent for agent in load.agents if agent.state is AgentState.READY]
    free = sum(agent.free_slots for agent in ready)
    slots = sum(agent.capacity for agent in ready)
    busy = load.loop_busy
    if busy is not None and busy >= CPU_BUSY:
        window = f"{load.loop_window_s:g} s"
        return Verdict(
            DISPATCHER_CPU,
            f"dispatcher CPU: loop busy {busy:.0%} of the last {window}",
            {"loop_busy": round(busy, 4), "window_s": load.loop_window_s},
        )
    if load.intake_paused and free > 0:
        return Verdict(
            INTAKE,
            f"intake: the dispatcher paused reading (held {load.held:,}, max_held "
            f"{load.max_held:,}) while agents have {free:,} free slots of {slots:,}",
            {"held": load.held, "max_held": load.max_held, "free_slots": free, "slots": slots},
        )
    slow = _slowest(ready)
    if slow is not None:
        return slow
    full = _full_need(load, ready)
    if full is not None:
        return full
    waiting = sum(d.waiting for d in load.demand.values())
    return Verdict(
        NONE,
        f"none: agents have {free:,} free slots of {slots:,}"
        + (" and nothing waits" if waiting == 0 else f"; {waiting:,} tasks on their way"),
        {"free_slots": free, "slots": slots, "waiting": waiting},
    )


def _slowest(ready: Sequence[AgentInfo]) -> Verdict | None:
    """The busy agent slowest against its pool's median, if it is ``SLOW_FACTOR`` slower."""
    pools: dict[str, list[AgentInfo]] = {}
    for agent in ready:
        if agent.ewma_run_ms is not None:
            pools.setdefault(pool_of(agent), []).append(agent)
    worst: tuple[float, AgentInfo, float] | None = None
    for agents in pools.values():
        if len(agents) < SLOW_PEERS:
            continue
        median = statistics.median(agent.ewma_run_ms or 0.0 for agent in agents)
        if median <= 0:
            continue
        for agent in agents:
            ratio = (agent.ewma_run_ms or 0.0) / median
            if agent.in_flight and ratio >= SLOW_FACTOR and (worst is None or ratio > worst[0]):
                worst = (ratio, agent, median)
    if worst is None:
        return None
    ratio, agent, median = worst
    run_ms = agent.ewma_run_ms or 0.0
    return Verdict(
        SLOW_AGENT,
        f"a slow agent: {agent.agent_id} runs {ratio:.1f}x the median time of its pool "
        f"{pool_of(agent)} ({run_ms:,.0f} ms against {median:,.0f} ms)",
        {
            "agent": agent.agent_id,
            "pool": pool_of(agent),
            "ratio": round(ratio, 2),
            "run_ms": round(run_ms, 1),
            "median_run_ms": round(median, 1),
        },
    )


def _full_need(load: Load, ready: Sequence[AgentInfo]) -> Verdict | None:
    """The need with the most tasks waiting among those whose capable agents are all full."""
    worst: tuple[int, str, Need | None, int, int] | None = None
    for need, demand in load.demand.items():
        if demand.waiting <= 0:
            continue
        capable = [agent for agent in ready if _serves(agent, need, load.zone_strict)]
        free = sum(agent.free_slots for agent in capable)
        if free == 0 and (worst is None or demand.waiting > worst[0]):
            slots = sum(agent.capacity for agent in capable)
            worst = (demand.waiting, _described(need, load.zone_strict), need, free, slots)
    orphans = sum(load.without_capable_agent.values())
    if orphans and (worst is None or orphans > worst[0]):
        types = ", ".join(sorted(load.without_capable_agent))
        worst = (orphans, f"a handler for type {types}", None, 0, 0)
    if worst is None:
        return None
    waiting, described, named, free, slots = worst
    figures: dict[str, object] = {"waiting": waiting, "free_slots": free, "slots": slots}
    if named is not None:
        figures["skills"] = sorted(named[0])
        figures["zone"] = named[1]
    tasks = f"{waiting:,} task waits" if waiting == 1 else f"{waiting:,} tasks wait"
    if slots == 0:
        text = f"agents: {tasks} for agents with {described}, and none is ready"
    else:
        text = f"agents: {tasks} for agents with {described}: {free:,} free slots of {slots:,}"
    return Verdict(AGENTS, text, figures)


def _serves(agent: AgentInfo, need: Need, zone_strict: bool) -> bool:
    skills, zone = need
    if not skills <= agent.skills:
        return False
    return not (zone_strict and zone is not None and agent.zone != zone)


def _described(need: Need, zone_strict: bool) -> str:
    """``skill gpu``, ``skills gpu, ssd in zone eu`` (a zone only where it binds), ``any
    skill`` (a need of nothing)."""
    skills, zone = need
    if not skills:
        text = "any skill"
    else:
        text = ("skill " if len(skills) == 1 else "skills ") + ", ".join(sorted(skills))
    return text + (f" in zone {zone}" if zone is not None and zone_strict else "")
