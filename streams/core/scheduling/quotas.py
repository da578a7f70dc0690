"""Per-tenant quotas: most tasks in flight, and a release rate as a token bucket.

Theory of operation
-------------------
In flight: a tenant's count is the number of its task ids released and not yet reported
finished; (tenant, id) pairs are counted, so a second ``finished`` for the same release
changes nothing.
Only tenants with a limit are counted (no unbounded bookkeeping for the others).

Rate: a bucket of ``burst`` tokens refilled at ``rate_per_s``, driven by the ``now_ms`` passed
in (never a clock). A release takes one token. Hence over any interval of ``d`` ms a tenant
gets at most ``burst + rate_per_s * d / 1000`` releases.

Invariants:
- ``admits`` is monotone within one release call (same ``now_ms``): in-flight counts only grow
  and tokens only shrink, so a tenant refused once stays refused for that call.
- ``next_token_ms`` reports only tokens awaited by a tenant refused in the last release call,
  and only times after that call: a wakeup there changes something, and a tenant held back by
  anything else (busy agents, reserved slots) never makes a simulator spin on the spot.
- Tokens never exceed ``burst``; a release is admitted only with at least one token (up to a
  float tolerance of 1e-9 token, far below one task).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from streams.core.model import Job

_EPSILON: Final = 1e-9


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; full at the first time it is read."""

    __slots__ = ("_burst", "_last_ms", "_rate_per_ms", "_tokens")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self._rate_per_ms = rate_per_s / 1000.0
        self._burst = burst
        self._tokens = burst
        self._last_ms: int | None = None

    def available(self, now_ms: int) -> bool:
        """Is a token there at ``now_ms``?"""
        return self._tokens_at(now_ms) >= 1.0 - _EPSILON

    def take(self, now_ms: int) -> None:
        self._tokens = self._tokens_at(now_ms) - 1.0
        self._last_ms = now_ms if self._last_ms is None else max(self._last_ms, now_ms)

    def next_token_ms(self, now_ms: int) -> int | None:
        """The first ms at which ``available`` holds; None if it already does at ``now_ms``."""
        if self.available(now_ms):
            return None
        estimate_ms = now_ms + max(
            1, math.ceil((1.0 - self._tokens_at(now_ms)) / self._rate_per_ms)
        )
        while estimate_ms - 1 > now_ms and self.available(estimate_ms - 1):
            estimate_ms -= 1  # float rounding: step to the exact first ms
        while not self.available(estimate_ms):
            estimate_ms += 1
        return estimate_ms

    def _tokens_at(self, now_ms: int) -> float:
        if self._last_ms is None or now_ms <= self._last_ms:
            return self._tokens
        gained = (now_ms - self._last_ms) * self._rate_per_ms
        return min(self._burst, self._tokens + gained)


class TenantQuotas:
    """Admission of one more release per tenant, by in-flight limit and token bucket.

    ``bursts`` gives the bucket size of every tenant in ``rates_per_s``.
    """

    def __init__(
        self,
        max_in_flight: Mapping[str, int],
        rates_per_s: Mapping[str, float],
        bursts: Mapping[str, float],
    ) -> None:
        self._max_in_flight = max_in_flight
        self._in_flight: dict[str, int] = {}
        self._running: dict[tuple[str, str], int] = {}
        """(tenant, task id) -> releases unfinished (more than one only if re-offered early)."""
        self._token_due_ms: dict[str, int] = {}
        """Tenants refused for want of tokens -> when the next one arrives (after the refusal)."""
        self.limited = frozenset(max_in_flight) | frozenset(rates_per_s)
        """Tenants with any quota: the others are always admitted."""
        self._buckets = {
            tenant: TokenBucket(rate, bursts[tenant]) for tenant, rate in rates_per_s.items()
        }

    def start_round(self, now_ms: int) -> None:
        """A release call begins at ``now_ms``: the tokens due by now are no longer awaited."""
        if self._token_due_ms:
            self._token_due_ms = {
                tenant: due_ms for tenant, due_ms in self._token_due_ms.items() if due_ms > now_ms
            }

    def admits(self, tenant: str, now_ms: int) -> bool:
        """May ``tenant`` have one more task released at ``now_ms``?"""
        limit = self._max_in_flight.get(tenant)
        if limit is not None and self._in_flight.get(tenant, 0) >= limit:
            return False
        bucket = self._buckets.get(tenant)
        if bucket is None:
            return True
        token_due_ms = bucket.next_token_ms(now_ms)
        if token_due_ms is None:
            return True
        self._token_due_ms[tenant] = token_due_ms
        return False

    def released(self, job: Job, now_ms: int) -> None:
        tenant = job.tenant
        if tenant in self._max_in_flight:
            self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
            key = (tenant, job.task_id)
            self._running[key] = self._running.get(key, 0) + 1
        bucket = self._buckets.get(tenant)
        if bucket is not None:
            bucket.take(now_ms)

    def finished(self, job: Job) -> None:
        """A released ``job`` ended or was requeued: its tenant has one fewer in flight."""
        key = (job.tenant, job.task_id)
        count = self._running.pop(key, 0)
        if count == 0:
            return
        if count > 1:
            self._running[key] = count - 1
        self._in_flight[job.tenant] -= 1

    def in_flight(self, tenant: str) -> int:
        """Tasks of ``tenant`` in flight (counted only for tenants with a limit)."""
        return self._in_flight.get(tenant, 0)

    def next_token_ms(self) -> int | None:
        """When a tenant refused for want of tokens in the last release call gets one back."""
        return min(self._token_due_ms.values()) if self._token_due_ms else None
