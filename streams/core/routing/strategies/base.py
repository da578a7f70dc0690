"""What every strategy is: given a job and one tier of candidates, pick an agent or none.

Contract for late-binding strategies: return an agent with a free slot whenever the tier holds
one, and never one without. Push baselines may return any agent of the tier. The tier is never
empty. A strategy may keep state between decisions (cursors, weights, remembered keys), keyed
by ``Tier.key`` so that it survives membership versions, and always bounded in size.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.model import AgentInfo, Job
from streams.core.routing.filters import Tier

MAX_TIER_STATES = 256
"""Tiers a stateful strategy keeps state for (LRU); a forgotten tier starts afresh."""


@dataclass(frozen=True, slots=True)
class Pick:
    """A strategy's choice; ``affinity_hit`` as in ``Route.affinity_hit``."""

    agent: AgentInfo
    affinity_hit: bool | None = None


class Strategy:
    """Base of the strategies: :meth:`pick` is required, :meth:`forget` optional."""

    __slots__ = ()

    def pick(self, job: Job, tier: Tier) -> Pick | None:
        """An agent of ``tier`` for ``job``, or ``None`` when no agent there is eligible."""
        raise NotImplementedError

    def forget(self, agent_id: str) -> None:
        """Drop whatever state names ``agent_id`` (it left the fleet)."""
