"""The dispatcher's settings: its timings and bounds, and the scheduling and routing policies.

They are the ``[dispatcher]`` table of the settings (``Settings.dispatcher``): from a TOML file,
``TASKD_DISPATCHER__<NAME>`` variables for single values (``TASKD_DISPATCHER__LEASE_MS=60000``),
``TASKD_DISPATCHER='{...}'`` (JSON) for the whole table, and ``taskd dispatcher`` flags for the
timings. Each mistake is reported on a line of its own, naming the setting.

The defaults are the core's (``SchedulerConfig``, ``HealthConfig``, ``DistributorConfig``,
``RoutingConfig``): written once, there. Every value is read when the dispatcher starts;
changing one needs a restart (``docs/operations.md``, *Policies*, says which could change live).

Tenant quotas and rate limits hold per dispatcher instance: with N instances sharing a prefix,
a tenant may have up to N times its ``max_in_flight`` running.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streams.config_errors import describe
from streams.core.agents import HealthConfig
from streams.core.distributor import DistributorConfig
from streams.core.grouping import GroupingConfig
from streams.core.preemption import PreemptionConfig
from streams.core.routing import RoutingConfig
from streams.core.routing.names import STRATEGY_NAMES
from streams.core.routing.rules import Fallback, RoutingRule
from streams.core.scaling import ScalingConfig
from streams.core.scheduling import SchedulerConfig
from streams.errors import ConfigError

if TYPE_CHECKING:
    from streams.settings import Settings

_SCHEDULER = SchedulerConfig()
_HEALTH = HealthConfig()
_CORE = DistributorConfig()
_ROUTING = RoutingConfig()
_SCALING = ScalingConfig()
_PREEMPTION = PreemptionConfig()
_FROZEN = ConfigDict(frozen=True, extra="forbid")
HOST_PLACEHOLDER = "{host}"
"""Stands for the host name in ``instance_id``: replicas of a container differ by it, and a
restarted container keeps it, which is what static membership needs."""


def _as_value_error(check: Any, *args: Any, **kwargs: Any) -> None:
    """Run a core check inside a pydantic validator: its ConfigError becomes a ValueError,
    which pydantic reports with the setting's place."""
    try:
        check(*args, **kwargs)
    except ConfigError as error:
        raise ValueError(str(error)) from None


class TenantPolicy(BaseModel):
    """One tenant's share and limits (``[dispatcher.tenants.NAME]``)."""

    model_config = _FROZEN

    weight: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="its fair share against other tenants"
    )
    max_in_flight: int | None = Field(
        None, ge=1, description="most of its tasks sent to agents and not yet ended"
    )
    max_rate_per_s: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="most of its tasks sent per second"
    )
    burst: float | None = Field(
        None,
        ge=1,
        allow_inf_nan=False,
        description="tasks it may send at once above its rate (default: max(1, rate))",
    )


class ScalingSettings(BaseModel):
    """How the autoscaling signal (``/scale``, ``taskd_desired_agents``) turns demand into
    agents (``[dispatcher.scaling]``; ``streams/core/scaling.py``)."""

    model_config = _FROZEN

    headroom: float = Field(
        _SCALING.headroom, ge=0, allow_inf_nan=False, description="capacity over the demand"
    )
    drain_s: float = Field(
        _SCALING.drain_s, gt=0, allow_inf_nan=False, description="the backlog gone within"
    )
    window_ms: int = Field(_SCALING.window_ms, ge=1, description="arrival rate measured over")
    cooldown_ms: int = Field(
        _SCALING.cooldown_ms, ge=0, description="scale down only after demand stayed lower"
    )
    min_agents: int = Field(_SCALING.min_agents, ge=0, description="fewest agents per pool")
    max_agents: int | None = Field(_SCALING.max_agents, ge=1, description="most per pool")

    def core(self) -> ScalingConfig:
        """The core's configuration (raises ConfigError for min above max)."""
        return ScalingConfig(
            headroom=self.headroom,
            drain_s=self.drain_s,
            window_ms=self.window_ms,
            cooldown_ms=self.cooldown_ms,
            min_agents=self.min_agents,
            max_agents=self.max_agents,
        )

    @model_validator(mode="after")
    def _valid(self) -> ScalingSettings:
        _as_value_error(self.core)
        return self


class RoutingRuleSetting(BaseModel):
    """One routing rule (``[[dispatcher.routing_rules]]``); the first that matches wins.

    ``pool`` selects agents: an agent id, ``skill=NAME`` (agents with that skill) or
    ``zone=NAME``; ``fallback`` says what to do when no agent of the pool is alive:
    ``WIDEN`` (every agent), ``WAIT`` or ``DEAD_LETTER``.
    """

    model_config = _FROZEN

    match_type: str | None = None
    match_tenant: str | None = None
    match_header: tuple[str, str] | None = Field(None, description="[name, value]")
    pool: tuple[str, ...] | None = None
    strategy: str | None = None
    fallback: tuple[Fallback, ...] = ()

    @model_validator(mode="after")
    def _valid_rule(self) -> RoutingRuleSetting:
        _as_value_error(self.rule)
        return self

    def rule(self) -> RoutingRule:
        """The core's rule (raises ConfigError for a bad strategy, pool or fallback)."""
        return RoutingRule(
            match_type=self.match_type,
            match_tenant=self.match_tenant,
            match_header=self.match_header,
            pool=None if self.pool is None else frozenset(self.pool),
            strategy=self.strategy,
            fallback=self.fallback,
        )


def _off_at_zero(value: Any) -> Any:
    """0 turns a wait off (``None``), as the flags say: TOML has no null (and a variable
    arrives as text)."""
    return None if value in (0, "0") else value


OptionalMs = Annotated[int | None, Field(ge=1)]
Level = Annotated[int, Field(ge=0)]


class DispatcherConfig(BaseModel):
    """The dispatcher's settings; timings in milliseconds. Checked on construction: a mistake
    raises :class:`ConfigError` (inside :class:`Settings`, one line per mistake)."""

    model_config = _FROZEN

    # --- timings and bounds ------------------------------------------------------------------
    lease_ms: int = Field(
        _CORE.lease_ms,
        ge=1,
        description="how long an agent may hold a task before it is taken back",
    )
    heartbeat_interval_ms: int = Field(
        _HEALTH.heartbeat_interval_ms,
        ge=1,
        description="the agents' heartbeat interval (what `taskd agent --heartbeat-ms` says)",
    )
    suspect_after_ms: int = Field(
        _HEALTH.suspect_after_ms, ge=1, description="silence before an agent is suspect"
    )
    down_after_ms: int = Field(
        _HEALTH.down_after_ms,
        ge=1,
        description="silence after which an agent is DOWN and its tasks go to others",
    )
    max_held: int = Field(
        _SCHEDULER.max_held, ge=1, description="tasks held before the task topics pause"
    )
    resume_at: int | None = Field(
        None, ge=0, description="held tasks at which reading resumes (default: 80% of max_held)"
    )
    no_capable_agent_ms: OptionalMs = Field(
        _SCHEDULER.no_capable_agent_timeout_ms,
        description="wait for a live agent able to run a task before it is dead-lettered as "
        "NO_CAPABLE_AGENT (0: for ever)",
    )
    tick_ms: int = Field(100, ge=1, description="longest sleep of the loop between two ticks")
    dedupe_window: int = Field(
        _CORE.dedupe_window, ge=1, description="ended task ids remembered to drop duplicates"
    )
    session_timeout_ms: int = Field(
        6_000,
        ge=1,
        description="Kafka group session: a killed instance's shards go to the others after "
        "this long (6 s is the broker's least by default)",
    )
    instance_id: str | None = Field(
        None,
        min_length=1,
        description="static group membership: a restart under this id within the session "
        "gets its shards back without a rebalance (unique per instance; `{host}` in it stands "
        "for the host name, stable across a container's restarts)",
    )
    commit_interval_ms: int = Field(
        100,
        ge=1,
        description="how often work is made durable and inputs committed; a crash may dispatch "
        "again what was dispatched in about this long before it",
    )
    web_enabled: bool = Field(
        True, description="serve /metrics, /status, /context and the dashboard on http_port"
    )
    events_enabled: bool = Field(
        False, description="write one lifecycle event per task to `events` (best effort)"
    )
    # --- scheduling --------------------------------------------------------------------------
    aging_ms: OptionalMs = Field(
        _SCHEDULER.aging_ms, description="each aging_ms waited raises a task one level (0: strict)"
    )
    escalation_ms: int = Field(
        _SCHEDULER.escalation_ms,
        ge=0,
        description="a task this close to its last start time jumps above every level (0: never)",
    )
    reserved_top_share: float = Field(
        _SCHEDULER.reserved_top_share,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="share of all slots kept for priority 0 and escalated tasks",
    )
    prefetch_share: float = Field(
        0.15,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="tasks sent to an agent beyond its slots, as a share of its capacity "
        "(rounded down; 0: never more tasks than slots)",
    )
    tenants: dict[str, TenantPolicy] = Field(
        default_factory=dict, description="each tenant's weight, in-flight quota and rate"
    )
    # --- preemption --------------------------------------------------------------------------
    preempt_after_ms: dict[Level, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="level -> how long (ms since submission) a task of that level waits, every "
        "slot it could use taken, before a preemptible run is stopped for it (none: no level "
        "preempts)",
    )
    preemptible_levels: tuple[Level, ...] = Field(
        tuple(sorted(_PREEMPTION.victims)),
        description="levels whose running tasks may be stopped for a more urgent task and "
        "queued again, their attempt not spent",
    )
    preempt_max_per_task: int = Field(
        _PREEMPTION.max_per_task, ge=1, description="times one task may be preempted"
    )
    # --- routing -----------------------------------------------------------------------------
    strategy: str = Field(
        _ROUTING.strategy,
        description="the routing strategy; round-robin-push and random-push are the naive "
        "baselines",
    )
    zone_strict: bool = Field(
        _ROUTING.zone_strict,
        description="a task's zone is a hard constraint, not a preference",
    )
    routing_rules: tuple[RoutingRuleSetting, ...] = Field(
        (), description="type, tenant or header -> pool of agents, strategy, fallback"
    )
    # --- grouping for batch handlers -----------------------------------------------------------
    group_batches: bool = Field(
        _CORE.grouping.enabled,
        description="send the tasks of a type whose agents announce a batch handler together, "
        "up to its max_size, to one agent",
    )
    group_max_wait_ms: int = Field(
        _CORE.grouping.max_wait_ms,
        ge=0,
        description="longest a group that is not full is held (the agents' own max_wait_ms, if "
        "smaller, applies; never within it of a task's deadline)",
    )
    # --- autoscaling signal ------------------------------------------------------------------
    scaling: ScalingSettings = Field(
        default_factory=ScalingSettings.model_construct,  # its defaults, valid as they are
        description="how demand becomes desired agents",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(describe(error, within=("dispatcher",))) from error

    @field_validator("aging_ms", "no_capable_agent_ms", mode="before")
    @classmethod
    def _zero_is_off(cls, value: Any) -> Any:
        return _off_at_zero(value)

    @field_validator("instance_id")
    @classmethod
    def _host_in_instance_id(cls, value: str | None) -> str | None:
        return None if value is None else value.replace(HOST_PLACEHOLDER, socket.gethostname())

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGY_NAMES:
            raise ValueError(f"unknown routing strategy; valid names: {', '.join(STRATEGY_NAMES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DispatcherConfig:
        """The checks across values, as the core makes them (its message, one line)."""
        _as_value_error(self.health)
        _as_value_error(self.scheduler, 1)
        _as_value_error(self.routing)
        return self

    @property
    def commit_interval_s(self) -> float:
        return self.commit_interval_ms / 1000

    def slots(self, capacity: int, prefetch: int | None = None) -> int:
        """The slots the core counts for an agent of ``capacity``: its own plus the prefetch
        share, but no more than the agent reads ahead (``prefetch``, as it announced; None:
        not announced). What it would not read would wait in Kafka, and any stop record
        behind it would reach the agent late."""
        extra = int(capacity * self.prefetch_share)
        return capacity + (extra if prefetch is None else min(extra, max(0, prefetch)))

    def health(self) -> HealthConfig:
        return HealthConfig(
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            suspect_after_ms=self.suspect_after_ms,
            down_after_ms=self.down_after_ms,
        )

    def scheduler(self, levels: int) -> SchedulerConfig:
        tenants = self.tenants.items()
        return SchedulerConfig(
            levels=levels,
            aging_ms=self.aging_ms,
            escalation_ms=self.escalation_ms,
            max_held=self.max_held,
            resume_at=self.resume_at,
            tenant_weights={name: t.weight for name, t in tenants},
            tenant_max_in_flight={n: t.max_in_flight for n, t in tenants if t.max_in_flight},
            tenant_max_rate_per_s={n: t.max_rate_per_s for n, t in tenants if t.max_rate_per_s},
            tenant_burst={n: t.burst for n, t in tenants if t.burst is not None},
            reserved_top_share=self.reserved_top_share,
            no_capable_agent_timeout_ms=self.no_capable_agent_ms,
        )

    def preemption(self) -> PreemptionConfig:
        return PreemptionConfig(
            after_ms=self.preempt_after_ms,
            victims=frozenset(self.preemptible_levels),
            max_per_task=self.preempt_max_per_task,
        )

    def routing(self) -> RoutingConfig:
        rules = tuple(setting.rule() for setting in self.routing_rules)
        return RoutingConfig(strategy=self.strategy, rules=rules, zone_strict=self.zone_strict)

    def distributor(self, settings: Settings) -> DistributorConfig:
        """The core's configuration: levels and retry tiers from the settings, the rest here."""
        return DistributorConfig(
            scheduler=self.scheduler(settings.priority_levels),
            health=self.health(),
            lease_ms=self.lease_ms,
            retry_backoffs_ms=settings.retry_tiers_ms,
            dedupe_window=self.dedupe_window,
            routing=self.routing(),
            grouping=GroupingConfig(enabled=self.group_batches, max_wait_ms=self.group_max_wait_ms),
            preemption=self.preemption(),
        )

    def overridden(self, values: dict[str, Any]) -> DispatcherConfig:
        """These settings with ``values`` in place of theirs (``None``: keep this one), checked
        again (the command line's flags over the settings)."""
        given = {name: value for name, value in values.items() if value is not None}
        return DispatcherConfig(**{**self.model_dump(), **given}) if given else self

    def shown(self) -> dict[str, Any]:
        """Every value, JSON-ready (``/context``): nothing here is secret."""
        return self.model_dump(mode="json")
