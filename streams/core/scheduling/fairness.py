"""Weighted fair share between tenants competing at the same effective priority.

Theory of operation
-------------------
Start-time fair queuing (stride scheduling) on release counts, one instance per effective
priority. Each tenant has a virtual finish time ``finish[t]``; the tier has a virtual time
``floor``, the start tag of the last release. A tenant's tag is ``max(finish[t], floor)``; the
scheduler releases from the eligible tenant with the smallest (tag, name), then charges it::

    start = tag(t);  finish[t] = start + 1 / weight(t);  floor = start

Invariants:
- ``floor`` never decreases: the tenant served has the smallest tag, and every tag is at
  least ``floor``.
- A tenant that was idle, blocked or over quota comes back at ``floor``: it gets its share
  from now on, not a burst to make up for the time it could not run.
- For tenants that stay backlogged and eligible, after each release every two tenants'
  ``count / weight`` differ by at most the larger stride ``1 / weight``; hence with two tenants
  of weights w1, w2 and n releases, tenant 1 gets within one release of ``n * w1 / (w1 + w2)``.
- A tenant whose ``finish`` is at most ``floor`` tags as one never seen, and stays so (``floor``
  never decreases): such entries are dropped once a tier's table has doubled since it was last
  pruned, so the tables hold the recently served tenants, not every name producers ever sent.
  Should more than MAX_TENANTS stay ahead of ``floor`` (a stream of names each served once),
  the half closest to it are forgotten too: each of those can gain at most one stride.
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.core.scheduling.priority import ESCALATED

PRUNE_FROM = 64
"""A tier's table is first pruned at this many tenants."""
MAX_TENANTS = 10_000
"""The most tenants a tier's table holds (see the invariants)."""


class FairShare:
    """Virtual times per (effective priority, tenant), weighted by ``weights`` (default 1)."""

    def __init__(self, weights: Mapping[str, float], levels: int) -> None:
        self._weights = weights
        self._finish: list[dict[str, float]] = [{} for _ in range(levels - ESCALATED)]
        self._floor: list[float] = [0.0] * (levels - ESCALATED)
        self._prune_at: list[int] = [PRUNE_FROM] * (levels - ESCALATED)

    def tag(self, eff: int, tenant: str) -> float:
        """The virtual time at which ``tenant`` would be served next at ``eff``: lower first."""
        index = eff - ESCALATED
        return max(self._finish[index].get(tenant, 0.0), self._floor[index])

    def charge(self, eff: int, tenant: str) -> None:
        """``tenant`` had one task released at ``eff``."""
        index = eff - ESCALATED
        start = self.tag(eff, tenant)
        finish = self._finish[index]
        finish[tenant] = start + 1.0 / self._weights.get(tenant, 1.0)
        self._floor[index] = start
        if len(finish) >= self._prune_at[index]:
            self._prune(index)

    def _prune(self, index: int) -> None:
        """Forget the tenants at or behind the floor, and past MAX_TENANTS the half closest
        to it (see the invariants)."""
        floor = self._floor[index]
        kept = {t: at for t, at in self._finish[index].items() if at > floor}
        if len(kept) >= MAX_TENANTS:
            by_finish = sorted(kept.items(), key=lambda item: item[1])
            kept = dict(by_finish[len(by_finish) - MAX_TENANTS // 2 :])
        self._finish[index] = kept
        self._prune_at[index] = min(max(PRUNE_FROM, 2 * len(kept)), MAX_TENANTS)

    def tenants(self, eff: int) -> int:
        """How many tenants the tier at ``eff`` remembers (a memory figure)."""
        return len(self._finish[eff - ESCALATED])
