"""Strategies that score every candidate: least connections, most capacity, best performance.

Each reads the live ``in_flight`` of every agent in the tier, so a decision costs ``O(tier)``;
ties go to the smaller agent id, so decisions are deterministic whatever the registry's order.
"""

from __future__ import annotations

from streams.core.model import AgentInfo, Job
from streams.core.routing.filters import Tier
from streams.core.routing.strategies.base import Pick, Strategy

MIN_RUN_MS = 1e-3
"""Floor for an EWMA run time, so a zero or negative figure cannot divide by zero."""


def least_loaded(tier: Tier) -> AgentInfo | None:
    """The free agent with the lowest ``in_flight / capacity``; ties: the smaller id."""
    best: AgentInfo | None = None
    best_load = 1.0  # a free agent's load is below 1
    for agent in tier.agents:
        in_flight, capacity = agent.in_flight, agent.capacity
        if in_flight >= capacity:
            continue
        load = in_flight / capacity
        if (
            best is None
            or load < best_load
            or (load == best_load and agent.agent_id < best.agent_id)
        ):
            best, best_load = agent, load
    return best


class LeastConnections(Strategy):
    """The free agent with the lowest ``in_flight / capacity``."""

    __slots__ = ()

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        agent = least_loaded(tier)
        return None if agent is None else Pick(agent)


class MostCapacity(Strategy):
    """The agent with the most free slots (absolute, so large agents take more work).

    Unlike least-connections, an 8-slot agent with 4 tasks (4 free) beats an idle 2-slot agent;
    ties go to the larger capacity, then the smaller id.
    """

    __slots__ = ()

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        best: AgentInfo | None = None
        best_key = (0, 0)  # (free slots, capacity): larger is roomier
        for agent in tier.agents:
            capacity = agent.capacity
            free_slots = capacity - agent.in_flight
            if free_slots <= 0 or free_slots < best_key[0]:
                continue
            key = (free_slots, capacity)
            if key > best_key or (key == best_key and _smaller_id(agent, best)):
                best, best_key = agent, key
        return None if best is None else Pick(best)


class Performance(Strategy):
    """The agent expected to complete the most work right now.

    Score: ``ewma_success / ewma_run_ms * free_slots``, successful completions per millisecond
    its free slots should deliver. An agent with no run time yet is given the best run time in
    the tier (an optimistic prior), so new agents get tried instead of starved.
    """

    __slots__ = ()

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        prior_run_ms = _fastest_run_ms(tier)
        best: AgentInfo | None = None
        best_score = -1.0
        for agent in tier.agents:
            free_slots = agent.capacity - agent.in_flight
            if free_slots <= 0:
                continue
            run_ms = agent.ewma_run_ms
            if run_ms is None:
                run_ms = prior_run_ms
            elif run_ms < MIN_RUN_MS:
                run_ms = MIN_RUN_MS
            success = agent.ewma_success
            score = (success if success > 0 else 0.0) * free_slots / run_ms
            if score > best_score or (score == best_score and _smaller_id(agent, best)):
                best, best_score = agent, score
        return None if best is None else Pick(best)


def _smaller_id(agent: AgentInfo, best: AgentInfo | None) -> bool:
    return best is None or agent.agent_id < best.agent_id


def _fastest_run_ms(tier: Tier) -> float:
    """The smallest EWMA run time in the tier, or 1 ms when no agent has one yet."""
    known = [agent.ewma_run_ms for agent in tier.agents if agent.ewma_run_ms is not None]
    return max(min(known), MIN_RUN_MS) if known else 1.0
