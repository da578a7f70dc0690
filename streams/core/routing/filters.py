"""The filters that turn the fleet into a job's candidates, before any strategy looks at load.

In order: healthy (state READY), has every required skill and a handler for the task's type
(an agent that names no types handles all), the manual target, the rule's pool, then the zone
preference. The zone splits the survivors into *tiers*: tier 0 holds the agents
in the job's zone, tier 1 the others (absent when ``zone_strict``); strategies try tier 0 first.
A job without a zone has a single tier.

Everything here depends only on what bumps the membership version (state, skills, task types,
zone, labels), never on ``in_flight``, so a tier can be cached for a whole version.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from streams.core.model import AgentInfo, AgentState, Job
from streams.core.routing.hashring import HashRing
from streams.core.routing.rules import in_pool

ClassKey = tuple[frozenset[str], str | None, frozenset[str] | None, str]
"""A constraint class: (required skills, zone, pool, task type). Jobs of one class share
candidates."""


@dataclass(slots=True)
class Tier:
    """The healthy candidates of one constraint class in one zone tier, for one version.

    ``key`` is stable across versions (strategies key their state on it); ``ring_ids`` holds
    every agent of the tier whatever its state, so that its hash ring survives health changes:
    a walk skips the unhealthy, which is the same as removing them, without rebuilding.
    """

    key: Hashable
    agents: tuple[AgentInfo, ...]
    """Healthy candidates, in the registry's order (never empty)."""
    members: Mapping[str, AgentInfo]
    """The same agents by id."""
    ring_ids: frozenset[str]
    capacity_total: int
    """Sum of the healthy agents' capacities (capacity changes bump the version)."""
    ring: HashRing | None = None
    """Set by the first hashing strategy that needs it in this version."""


def is_healthy(agent: AgentInfo) -> bool:
    """Only READY agents take work (not JOINING, DRAINING, SUSPECT or DOWN)."""
    return agent.state is AgentState.READY


def has_free_slot(agent: AgentInfo) -> bool:
    return agent.in_flight < agent.capacity


def class_tiers(
    agents: Sequence[AgentInfo], key: ClassKey, *, zone_strict: bool
) -> tuple[Tier, ...]:
    """The tiers of a constraint class (``O(agents)``: call once per class and version)."""
    skills, zone, pool, task_type = key
    groups: tuple[list[AgentInfo], list[AgentInfo]] = ([], [])
    for agent in agents:
        if not _fits(agent, skills, pool, task_type):
            continue
        outside_zone = zone is not None and agent.zone != zone
        if outside_zone and zone_strict:
            continue
        groups[1 if outside_zone else 0].append(agent)
    tiers = (_tier((key, index), group) for index, group in enumerate(groups))
    return tuple(tier for tier in tiers if tier is not None)


def target_tiers(
    by_id: Mapping[str, AgentInfo],
    job: Job,
    pool: frozenset[str] | None,
    *,
    zone_strict: bool,
) -> tuple[Tier, ...]:
    """The single tier of a manually targeted job: its target if every filter admits it."""
    agent = by_id.get(job.target_agent) if job.target_agent is not None else None
    if agent is None or not is_healthy(agent):
        return ()
    if not _fits(agent, job.required_skills, pool, job.task_type):
        return ()
    if zone_strict and job.zone is not None and agent.zone != job.zone:
        return ()
    agent_id = agent.agent_id
    members = {agent_id: agent}
    return (Tier(("target", agent_id), (agent,), members, frozenset(members), agent.capacity),)


def _fits(
    agent: AgentInfo, skills: frozenset[str], pool: frozenset[str] | None, task_type: str
) -> bool:
    return (
        skills <= agent.skills
        and (pool is None or in_pool(agent, pool))
        and agent.handles(task_type)
    )


def _tier(key: Hashable, group: list[AgentInfo]) -> Tier | None:
    healthy = tuple(agent for agent in group if is_healthy(agent))
    if not healthy:
        return None
    members = {agent.agent_id: agent for agent in healthy}
    ring_ids = frozenset(agent.agent_id for agent in group)
    return Tier(key, healthy, members, ring_ids, sum(agent.capacity for agent in healthy))
