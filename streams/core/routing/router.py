"""The router: filters, then a strategy, then the fallback chain; one decision per call.

Theory of operation. ``route`` takes a job and the registry's whole fleet. It

1. matches the routing rules (first match wins) to get the strategy, pool and fallback chain;
2. takes the job's candidates from the snapshot of this membership version: healthy agents
   with every required skill, the manual target, the pool, split into zone tiers;
3. when there are none, walks the fallback chain (WIDEN drops the pool, WAIT answers BUSY,
   DEAD_LETTER or the end of the chain answers NO_CAPABLE_AGENT);
4. asks the strategy for an agent, tier by tier (the job's zone first).

Invariants: a late-binding route never names an agent without a free slot and answers BUSY
only when no candidate has one; no route names an unhealthy or incapable agent; a manually
targeted job goes to its target or nowhere. The router never reads a clock or an unseeded
random source: the same configuration and the same calls give the same routes.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.model import AgentInfo, Job
from streams.core.routing.config import RoutingConfig
from streams.core.routing.filters import Tier, has_free_slot
from streams.core.routing.names import is_late_binding
from streams.core.routing.outcome import Route, RouteOutcome
from streams.core.routing.rules import Fallback, RoutingRule, first_match
from streams.core.routing.snapshot import Snapshot
from streams.core.routing.strategies import Strategy, build_strategies

_DEFAULT_RULE = RoutingRule()


class Router:
    """Picks the agent for each job; create one per dispatcher shard and keep it."""

    __slots__ = ("_config", "_snapshot", "_strategies")

    def __init__(self, config: RoutingConfig) -> None:
        self._config = config
        self._strategies: dict[str, Strategy] = build_strategies(config, config.strategy_names())
        self._snapshot: Snapshot | None = None

    def route(
        self, job: Job, agents: Sequence[AgentInfo], membership_version: int, now_ms: int
    ) -> Route:
        """Where ``job`` should run now, given every known agent (in any state).

        ``membership_version`` must change whenever an agent joins, leaves, or changes state,
        capacity, skills, zone, weight or labels; ``in_flight`` is read live. ``now_ms`` is
        accepted for time-aware strategies; none of the current ones reads it.
        """
        rule = first_match(self._config.rules, job) or _DEFAULT_RULE
        name = rule.strategy or self._config.strategy
        snapshot = self._current_snapshot(agents, membership_version)
        tiers = snapshot.candidates(job, rule.pool)
        if not tiers:
            return self._fall_back(job, rule, snapshot, name)
        return self._choose(job, tiers, name)

    def candidates(
        self, job: Job, agents: Sequence[AgentInfo], membership_version: int
    ) -> list[AgentInfo]:
        """The healthy agents ``route`` could pick for ``job``, busy or not (its rule's pool,
        widened if the rule says so and the pool has none): where a slot freed would serve it."""
        rule = first_match(self._config.rules, job) or _DEFAULT_RULE
        snapshot = self._current_snapshot(agents, membership_version)
        tiers = snapshot.candidates(job, rule.pool)
        if not tiers and Fallback.WIDEN in rule.fallback:
            tiers = snapshot.candidates(job, None)
        return [agent for tier in tiers for agent in tier.agents]

    def late_binding(self, job: Job) -> bool:
        """False when the strategy the rules choose for ``job`` is a push baseline."""
        rule = first_match(self._config.rules, job) or _DEFAULT_RULE
        return is_late_binding(rule.strategy or self._config.strategy)

    def forget(self, agent_id: str) -> None:
        """Drop what the strategies remember about an agent that left (its affinity keys)."""
        for strategy in self._strategies.values():
            strategy.forget(agent_id)

    def _current_snapshot(self, agents: Sequence[AgentInfo], version: int) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None or not snapshot.is_current(agents, version):
            snapshot = Snapshot(agents, version, zone_strict=self._config.zone_strict)
            self._snapshot = snapshot
        return snapshot

    def _fall_back(self, job: Job, rule: RoutingRule, snapshot: Snapshot, name: str) -> Route:
        """Walk the rule's fallback chain: the candidates were empty."""
        for step in rule.fallback:
            if step is Fallback.WAIT:
                return Route(RouteOutcome.BUSY, strategy=name)
            if step is Fallback.DEAD_LETTER:
                break
            tiers = snapshot.candidates(job, None)  # WIDEN
            if tiers:
                return self._choose(job, tiers, name)
        return Route(RouteOutcome.NO_CAPABLE_AGENT, strategy=name)

    def _choose(self, job: Job, tiers: tuple[Tier, ...], name: str) -> Route:
        """The strategy's pick from the first tier that yields one; BUSY when none does."""
        if job.target_agent is not None:  # its only tier holds just the target
            return _targeted(tiers[0].agents[0], name)
        strategy = self._strategies[name]
        for tier in tiers:
            pick = strategy.pick(job, tier)
            if pick is not None:
                agent_id = pick.agent.agent_id
                return Route(RouteOutcome.ROUTED, agent_id, name, pick.affinity_hit)
        return Route(RouteOutcome.BUSY, strategy=name)


def _targeted(agent: AgentInfo, name: str) -> Route:
    """A manually targeted job: its target if it may take the job now, else wait for it."""
    if is_late_binding(name) and not has_free_slot(agent):
        return Route(RouteOutcome.BUSY, strategy=name)
    return Route(RouteOutcome.ROUTED, agent.agent_id, name)
