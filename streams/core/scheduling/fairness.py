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
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.core.scheduling.priority import ESCALATED


class FairShare:
    """Virtual times per (effective priority, tenant), weighted by ``weights`` (default 1)."""

    def __init__(self, weights: Mapping[str, float], levels: int) -> None:
        self._weights = weights
        self._finish: list[dict[str, float]] = [{} for _ in range(levels - ESCALATED)]
        self._floor: list[float] = [0.0] * (levels - ESCALATED)

    def tag(self, eff: int, tenant: str) -> float:
        """The virtual time at which ``tenant`` would be served next at ``eff``: lower first."""
        index = eff - ESCALATED
        return max(self._finish[index].get(tenant, 0.0), self._floor[index])

    def charge(self, eff: int, tenant: str) -> None:
        """``tenant`` had one task released at ``eff``."""
        index = eff - ESCALATED
        start = self.tag(eff, tenant)
        self._finish[index][tenant] = start + 1.0 / self._weights.get(tenant, 1.0)
        self._floor[index] = start
