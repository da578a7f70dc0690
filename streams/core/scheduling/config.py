"""The scheduler's settings: one frozen object, checked once when it is built.

Every time is in integer milliseconds, every rate in tasks per second. Tenants not named in a
mapping get the default: weight 1, no in-flight limit, no rate limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How the scheduler orders, ages, escalates, bounds and shares the tasks it holds."""

    levels: int = 4
    """Priority levels ``0 .. levels-1``; 0 is the most urgent."""
    aging_ms: int | None = 30_000
    """Each ``aging_ms`` waited raises a task's effective priority by one level; None: strict."""
    escalation_ms: int = 2_000
    """A task with less than this left before its last start time jumps above every level."""
    max_held: int = 100_000
    """Held tasks at which ``paused`` turns True (the adapter stops reading; nothing is dropped)."""
    resume_at: int | None = None
    """Held tasks at or below which ``paused`` turns False again; None: 80% of ``max_held``."""
    tenant_weights: Mapping[str, float] = field(default_factory=dict)
    """Weighted fair share between tenants within one effective priority."""
    tenant_max_in_flight: Mapping[str, int] = field(default_factory=dict)
    """Most tasks a tenant may have released and not yet finished."""
    tenant_max_rate_per_s: Mapping[str, float] = field(default_factory=dict)
    """Token-bucket rate of releases per tenant."""
    tenant_burst: Mapping[str, float] = field(default_factory=dict)
    """Token-bucket size per rate-limited tenant; default ``max(1, rate)``."""
    reserved_top_share: float = 0.0
    """Share of all slots kept for effective priority 0 and escalated tasks."""
    no_capable_agent_timeout_ms: int | None = 60_000
    """How long a task may wait with no capable agent at all before it is dead-lettered."""

    def __post_init__(self) -> None:
        _check_times(self)
        _check_bounds(self)
        _check_tenants(self)
        for name in _TENANT_MAPPINGS:  # a private copy: the caller's dict may change later
            object.__setattr__(self, name, dict(getattr(self, name)))

    @property
    def resume_threshold(self) -> int:
        """The low watermark actually used: ``resume_at`` or 80% of ``max_held``."""
        return self.resume_at if self.resume_at is not None else self.max_held * 4 // 5

    def burst_of(self, tenant: str) -> float:
        """Token-bucket size of a rate-limited tenant."""
        burst = self.tenant_burst.get(tenant)
        return burst if burst is not None else max(1.0, self.tenant_max_rate_per_s[tenant])


_TENANT_MAPPINGS = (
    "tenant_weights",
    "tenant_max_in_flight",
    "tenant_max_rate_per_s",
    "tenant_burst",
)


def _fail(field_name: str, problem: str, value: object) -> ConfigError:
    return ConfigError(f"scheduler.{field_name} {problem} (got {value!r})")


def _check_times(config: SchedulerConfig) -> None:
    if config.levels < 1:
        raise _fail("levels", "must be at least 1", config.levels)
    if config.aging_ms is not None and config.aging_ms <= 0:
        raise _fail("aging_ms", "must be > 0, or None for strict priority", config.aging_ms)
    if config.escalation_ms < 0:
        raise _fail("escalation_ms", "must be >= 0 (0 disables escalation)", config.escalation_ms)
    timeout_ms = config.no_capable_agent_timeout_ms
    if timeout_ms is not None and timeout_ms < 0:
        raise _fail("no_capable_agent_timeout_ms", "must be >= 0, or None to wait", timeout_ms)


def _check_bounds(config: SchedulerConfig) -> None:
    if config.max_held < 1:
        raise _fail("max_held", "must be at least 1", config.max_held)
    resume_at = config.resume_at
    if resume_at is not None and not 0 <= resume_at < config.max_held:
        raise _fail("resume_at", f"must be in [0, max_held={config.max_held})", resume_at)
    share = config.reserved_top_share
    if not (math.isfinite(share) and 0.0 <= share < 1.0):
        raise _fail("reserved_top_share", "must be in [0, 1)", share)


def _check_tenants(config: SchedulerConfig) -> None:
    for tenant, weight in config.tenant_weights.items():
        if not (math.isfinite(weight) and weight > 0):
            raise _fail(f"tenant_weights[{tenant!r}]", "must be a finite number > 0", weight)
    for tenant, limit in config.tenant_max_in_flight.items():
        if limit < 1:
            raise _fail(f"tenant_max_in_flight[{tenant!r}]", "must be at least 1", limit)
    for tenant, rate in config.tenant_max_rate_per_s.items():
        if not (math.isfinite(rate) and rate > 0):
            raise _fail(f"tenant_max_rate_per_s[{tenant!r}]", "must be a finite rate > 0", rate)
    for tenant, burst in config.tenant_burst.items():
        if tenant not in config.tenant_max_rate_per_s:
            raise _fail(f"tenant_burst[{tenant!r}]", "needs a tenant_max_rate_per_s", burst)
        if not (math.isfinite(burst) and burst >= 1):
            raise _fail(f"tenant_burst[{tenant!r}]", "must be a finite number >= 1", burst)
