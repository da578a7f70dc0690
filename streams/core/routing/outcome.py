"""What the router answers for one task: routed to an agent, wait for a slot, or never runnable."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RouteOutcome(enum.Enum):
    """The three answers the scheduler acts on."""

    ROUTED = "ROUTED"
    """An agent was chosen: dispatch to ``Route.agent_id``."""
    BUSY = "BUSY"
    """Capable agents exist but none has a free slot (or a rule said WAIT): keep the task queued."""
    NO_CAPABLE_AGENT = "NO_CAPABLE_AGENT"
    """No healthy agent can run it (skills, target, zone, pool): dead-letter it."""


@dataclass(frozen=True, slots=True)
class Route:
    """One routing decision.

    ``strategy`` names the strategy that applied (after the routing rules);
    ``affinity_hit`` is ``None`` unless the affinity strategy routed a job with an affinity key,
    and then says whether it landed on the agent that key was remembered on.
    """

    outcome: RouteOutcome
    agent_id: str | None = None
    strategy: str = ""
    affinity_hit: bool | None = None
