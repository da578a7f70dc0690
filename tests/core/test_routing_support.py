"""Shared generators and an independent oracle for the routing tests (this module has no tests).

The oracle restates the documented filters in the plainest possible way, so that properties
compare the router against the specification rather than against its own code.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from streams.core.model import AgentInfo, AgentState, Job

SKILLS = ("gpu", "cpu", "ssd")
ZONES = ("eu", "us")
KEYS = tuple(f"key-{index}" for index in range(6))


@st.composite
def agents(draw: st.DrawFn, index: int) -> AgentInfo:
    """One agent with every field varied, including in_flight above capacity (push overload)."""
    capacity = draw(st.integers(0, 4))
    return AgentInfo(
        agent_id=f"agent-{index}",
        capacity=capacity,
        skills=draw(st.frozensets(st.sampled_from(SKILLS))),
        zone=draw(st.sampled_from((None, *ZONES))),
        weight=draw(st.sampled_from((0.0, 0.5, 1.0, 3.0))),
        state=draw(st.sampled_from(AgentState)),
        in_flight=draw(st.integers(0, capacity + 1)),
        ewma_run_ms=draw(st.none() | st.floats(1.0, 1000.0)),
        ewma_success=draw(st.floats(0.0, 1.0)),
        labels=draw(st.sampled_from(({}, {"tier": "gold"}, {"tier": "basic"}))),
    )


@st.composite
def fleets(draw: st.DrawFn, min_size: int = 0, max_size: int = 8) -> list[AgentInfo]:
    """A registry's list of agents (any states), with distinct ids."""
    size = draw(st.integers(min_size, max_size))
    return [draw(agents(index)) for index in range(size)]


@st.composite
def jobs(draw: st.DrawFn, number: int = 0, fleet_size: int = 8) -> Job:
    """A job with skills, zone, manual target, affinity key and routing fields varied."""
    target = st.none() | st.builds("agent-{}".format, st.integers(0, fleet_size))
    return Job(
        task_id=f"task-{number}",
        priority=0,
        submitted_ms=0,
        tenant=draw(st.sampled_from(("acme", "globex"))),
        task_type=draw(st.sampled_from(("render", "index"))),
        required_skills=draw(st.frozensets(st.sampled_from(SKILLS), max_size=2)),
        zone=draw(st.sampled_from((None, *ZONES))),
        target_agent=draw(st.none() | target),
        affinity_key=draw(st.none() | st.sampled_from(KEYS)),
        headers=draw(st.sampled_from(((), (("lane", "fast"),)))),
    )


def capable(job: Job, fleet: Sequence[AgentInfo]) -> list[AgentInfo]:
    """Healthy agents with the skills and the target: the ones that may ever run ``job``."""
    return [a for a in fleet if a.state is AgentState.READY and a.can_run(job)]


def free(fleet: Sequence[AgentInfo]) -> list[AgentInfo]:
    return [a for a in fleet if a.in_flight < a.capacity]


def zone_tiers(job: Job, fleet: Sequence[AgentInfo], *, strict: bool) -> list[list[AgentInfo]]:
    """The capable agents in the job's zone, then (unless strict) the others."""
    agents = capable(job, fleet)
    if job.zone is None:
        return [agents]
    inside = [a for a in agents if a.zone == job.zone]
    outside = [a for a in agents if a.zone != job.zone]
    return [inside] if strict else [inside, outside]


def by_id(fleet: Sequence[AgentInfo], agent_id: str | None) -> AgentInfo:
    matches = [a for a in fleet if a.agent_id == agent_id]
    assert len(matches) == 1, f"route names {agent_id!r}, not exactly one agent of the fleet"
    return matches[0]


def fleet_of(capacities: Sequence[int], **fields: object) -> list[AgentInfo]:
    """Healthy agents ``a0``, ``a1``, ... with the given capacities and common fields."""
    return [
        AgentInfo(f"a{index}", capacity, **fields)  # type: ignore[arg-type]
        for index, capacity in enumerate(capacities)
    ]


def job(number: int = 0, **fields: object) -> Job:
    return Job(f"task-{number}", 0, 0, **fields)  # type: ignore[arg-type]
