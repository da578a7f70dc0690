"""The scheduler's placer: asks the router for an agent and takes the lease on it.

The scheduler decides *which* task goes next; the router decides *where*; this adapter joins
the two for one release pass at ``now_ms``.
"""

from __future__ import annotations

from dataclasses import replace

from streams.core.agents import AgentRegistry
from streams.core.leases import InFlight
from streams.core.model import Job
from streams.core.routing import RouteOutcome, Router
from streams.core.scheduling import NEVER, NeverPlaceable


class RoutingPlacer:
    """Places jobs for one release pass; remembers affinity hits for the statistics."""

    def __init__(
        self,
        router: Router,
        registry: AgentRegistry,
        in_flight: InFlight,
        lease_ms: int,
        now_ms: int,
    ) -> None:
        self._router = router
        self._registry = registry
        self._in_flight = in_flight
        self._lease_ms = lease_ms
        self._now_ms = now_ms
        self.affinity_hits: dict[str, bool | None] = {}

    def place(self, job: Job) -> str | NeverPlaceable | None:
        """An agent id (its slot is now taken), None (all busy) or NEVER (none capable)."""
        registry = self._registry
        route = self._router.route(job, registry.agents, registry.membership_version, self._now_ms)
        if route.outcome is RouteOutcome.NO_CAPABLE_AGENT:
            return NEVER
        if route.outcome is RouteOutcome.BUSY or route.agent_id is None:
            return None
        overbook = not self._router.late_binding(job)
        self._in_flight.assign(job, route.agent_id, self._now_ms, self._lease_ms, overbook=overbook)
        self.affinity_hits[job.task_id] = route.affinity_hit
        return route.agent_id

    def place_on(self, job: Job, agent_id: str) -> str | None:
        """``agent_id`` if the router would send ``job`` there now: the route of ``job`` as if
        targeted at it (health, skills, type, pool, zone, a free slot); its slot is then taken."""
        if job.target_agent is not None and job.target_agent != agent_id:
            return None
        targeted = replace(job, target_agent=agent_id)
        registry = self._registry
        route = self._router.route(
            targeted, registry.agents, registry.membership_version, self._now_ms
        )
        if route.outcome is not RouteOutcome.ROUTED or route.agent_id != agent_id:
            return None
        self._in_flight.assign(job, agent_id, self._now_ms, self._lease_ms, overbook=False)
        self.affinity_hits[job.task_id] = None
        return agent_id

    def late_binding(self, job: Job) -> bool:
        """False when the job's strategy is a push baseline (it overbooks agents)."""
        return self._router.late_binding(job)

    @property
    def total_slots(self) -> int:
        return self._registry.total_slots

    @property
    def free_slots(self) -> int:
        return self._registry.free_slots
