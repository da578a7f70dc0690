"""A simulation scenario: agents, arrivals, task mix, seed and strategies, validated and frozen.

``parse_scenario`` takes the TOML as a dict (or ``scenario_from_toml`` as text: the CLI reads
the file) and raises :class:`ConfigError` naming the field for anything wrong: unknown keys,
negative or zero rates, shares that do not sum to 1, an unknown strategy or distribution.

Shares must sum to 1 (within 1e-6): we decided against normalizing them, because a mix that
does not add up is more often a typo than an intent, and a silent rescale hides it.

Layout (every key but ``[arrivals]``, ``[[agents]]`` and ``[[tasks]]`` is optional)::

    name = "reference"            seed = 42
    strategies = ["affinity", "round-robin-push"]
    time_limit_ms = 3_600_000     lease_ms = 300_000     retry_backoffs_ms = [1000, 10000]
    dispatcher_shards = 1         dispatcher_instances = 0 (0: one per shard)
    sharding = "split-slots" | "split-slots-even" | "own-agents"             (sharding.py)
    steal_ms = 0                  (work stealing between instances every steal_ms: stealing.py)
    warmup_ms = 0                 (steady-state figures count tasks submitted from then on)
    [health]     heartbeat_interval_ms, suspect_after_ms, down_after_ms
    [scheduler]  levels, aging_ms (0: strict), escalation_ms, max_held, reserved_top_share,
                 no_capable_agent_timeout_ms, tenant_weights = {tenant = weight}
    [routing]    hash_load_factor, virtual_nodes, zone_strict, affinity_keys_max
    [arrivals]   process = poisson|constant|bursts, rate_per_s | load, tasks | duration_ms,
                 burst_size
    [[agents]]   name, count, capacity, speed, skills, zone, weight, cost_per_task,
                 failure_probability, crash_at_ms, recover_at_ms, prefetch,
                 cost_per_hour (1: what ``taskd plan`` counts as an agent's cost)
    [[tasks]]    share, type, priority, work = {distribution, mean, sigma}, deadline_ms,
                 ttl_ms, required_skills, tenants, zone, max_attempts, affinity_keys,
                 affinity = uniform|zipf, zipf_exponent, ordering_keys (tasks sharing a key
                 run one at a time, in order)
    [[variants]] name, dispatcher_shards, dispatcher_instances, sharding, steal_ms, autoscale,
                 preempt (false: without the [preemption]): run every strategy once per
                 variant (each defaults to the scenario's own)
    [preemption] after_ms = {"0" = 2000} (level -> wait before it preempts), victims = [2, 3]
                 (levels that may be preempted), max_per_task (1): ``streams.core.preemption``
    [arrivals]   phases = [{duration_ms, rate_per_s | load}, ...] instead of one rate: a load
                 that rises and falls
    [autoscale]  group, initial, startup_ms, interval_ms, min_agents, max_agents, headroom,
                 drain_s, window_ms, cooldown_ms: an autoscaler following the signal of
                 ``streams.core.scaling`` for that group (a variant with autoscale = true, or
                 every run when the scenario has no variants)
    slo = "p99_queue<2s"          (optional: each run of the report is judged on it)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from streams.core.agents import HealthConfig
from streams.core.preemption import PreemptionConfig
from streams.core.routing.config import RoutingConfig
from streams.core.routing.names import AFFINITY, check_strategy_name
from streams.core.scheduling.config import SchedulerConfig
from streams.core.sim.fields import Fields, load_toml
from streams.core.sim.sections import (
    parse_agents,
    parse_arrivals,
    parse_autoscale,
    parse_tasks,
    parse_variants,
)
from streams.core.sim.sharding import SHARDINGS, SPLIT_SLOTS
from streams.core.sim.slo import parse_slo
from streams.core.sim.spec import AgentGroup, Arrivals, AutoscaleSpec, TaskClass, Variant
from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything one simulation needs; the same scenario and seed give the same run."""

    name: str
    seed: int
    strategies: tuple[str, ...]
    arrivals: Arrivals
    agents: tuple[AgentGroup, ...]
    tasks: tuple[TaskClass, ...]
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    """Template: each run replaces its strategy (and seeds it with ``seed``)."""
    health: HealthConfig = field(default_factory=HealthConfig)
    lease_ms: int = 300_000
    retry_backoffs_ms: tuple[int, ...] = (1_000, 10_000, 60_000)
    time_limit_ms: int | None = None
    """Stop then even if tasks remain; ``None``: see :meth:`limit_ms`."""
    dispatcher_shards: int = 1
    """Partitions of the task topics (``sharding.py``); 1: one global scheduler."""
    dispatcher_instances: int = 0
    """Instances sharing the shards, one distributor each; 0: one per shard."""
    sharding: str = SPLIT_SLOTS
    """How the agents' slots are divided: split-slots, split-slots-even or own-agents."""
    steal_ms: int = 0
    """Work stealing between the instances every this many ms (``stealing.py``); 0: none."""
    warmup_ms: int = 0
    """Steady-state figures count the tasks submitted from then on (``steady.py``)."""
    variants: tuple[Variant, ...] = ()
    """Ways to run it in one comparison; empty: just as written."""
    autoscale: AutoscaleSpec | None = None
    """An autoscaler for one agent group (``[autoscale]``), used when ``autoscaled``."""
    autoscaled: bool = False
    """Run with ``autoscale``: true for a scenario with ``[autoscale]`` and no variants, and
    for its variants with ``autoscale = true``."""
    slo: str | None = None
    """An objective each run of a report is judged on (``slo.py``'s grammar)."""
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    """Which levels may stop runs of which (``[preemption]``); off unless given."""

    @property
    def work_rate(self) -> float:
        """Work units per second all agents together can run."""
        return sum(group.work_rate for group in self.agents)

    @property
    def mean_work(self) -> float:
        """Mean work of one task of the mix (units)."""
        return sum(task.share * task.work.mean for task in self.tasks)

    @property
    def offered_load(self) -> float:
        """Arrival rate times mean work over capacity (1.0: the agents are just busy enough)."""
        return self.arrivals.rate_per_s * self.mean_work / self.work_rate

    def with_variant(self, variant: Variant) -> Scenario:
        """The scenario run as ``variant`` says (no variants of its own any more)."""
        return replace(
            self,
            dispatcher_shards=variant.dispatcher_shards,
            dispatcher_instances=variant.dispatcher_instances,
            sharding=variant.sharding,
            steal_ms=variant.steal_ms,
            variants=(),
            autoscaled=variant.autoscale and self.autoscale is not None,
            preemption=self.preemption if variant.preempt else PreemptionConfig(),
        )

    def limit_ms(self, last_arrival_ms: int) -> int:
        """When a run stops: ``time_limit_ms``, else 10x the arrival span plus one hour."""
        if self.time_limit_ms is not None:
            return self.time_limit_ms
        return 10 * last_arrival_ms + 3_600_000


def scenario_from_toml(text: str) -> Scenario:
    """Parse and validate a scenario written in TOML."""
    return parse_scenario(load_toml(text))


def parse_scenario(data: Mapping[str, object]) -> Scenario:
    """Validate a scenario given as the dict TOML parses to (see the module docstring)."""
    top = Fields(data, "")
    scheduler = _scheduler(top.sub("scheduler"))
    agents = parse_agents(top)
    tasks = parse_tasks(top, levels=scheduler.levels)
    shape = Variant(
        name="",
        dispatcher_shards=top.int_("dispatcher_shards", 1, minimum=1),
        sharding=top.choice("sharding", SHARDINGS, SPLIT_SLOTS),
        steal_ms=top.int_("steal_ms", 0),
        dispatcher_instances=top.int_("dispatcher_instances", 0),
    )
    scenario = Scenario(
        name=top.str_("name", "scenario"),
        seed=top.int_("seed", 0),
        strategies=_strategies(top),
        arrivals=parse_arrivals(top.sub("arrivals"), agents, tasks),
        agents=agents,
        tasks=tasks,
        scheduler=scheduler,
        routing=_routing(top.sub("routing")),
        health=_health(top.sub("health")),
        lease_ms=top.int_("lease_ms", 300_000, minimum=1),
        retry_backoffs_ms=top.int_list("retry_backoffs_ms", [1_000, 10_000, 60_000]),
        time_limit_ms=top.opt_int("time_limit_ms", minimum=1),
        dispatcher_shards=shape.dispatcher_shards,
        dispatcher_instances=shape.dispatcher_instances,
        sharding=shape.sharding,
        steal_ms=shape.steal_ms,
        warmup_ms=top.int_("warmup_ms", 0),
        variants=parse_variants(top, shape),
        autoscale=parse_autoscale(top, agents),
        slo=top.opt_str("slo"),
        preemption=_preemption(top.sub("preemption"), scheduler.levels),
    )
    scenario = replace(scenario, autoscaled=bool(scenario.autoscale and not scenario.variants))
    if scenario.slo is not None:
        try:
            parse_slo(scenario.slo)
        except ConfigError as error:
            raise top.error("slo", str(error)) from error
    if any(variant.autoscale for variant in scenario.variants) and scenario.autoscale is None:
        raise top.error("variants", "a variant with autoscale = true needs an [autoscale] table")
    top.done()
    return scenario


def _preemption(fields: Fields, levels: int) -> PreemptionConfig:
    waits = fields.raw("after_ms") if fields.has("after_ms") else {}
    if not isinstance(waits, Mapping):
        raise fields.error("after_ms", "must be a table: level = ms")
    after_ms: dict[int, int] = {}
    for level, wait_ms in waits.items():
        if not (str(level).isdigit() and isinstance(wait_ms, int) and wait_ms >= 0):
            raise fields.error("after_ms", f"needs level = ms >= 0, got {level} = {wait_ms!r}")
        after_ms[int(level)] = wait_ms
    try:
        config = PreemptionConfig(
            after_ms=after_ms,
            victims=frozenset(fields.int_list("victims", [1]) if fields.has("victims") else ()),
            max_per_task=fields.int_("max_per_task", 1, minimum=1),
        )
        config.check_levels(levels)
    except ConfigError as error:
        raise fields.error("after_ms", str(error)) from error
    fields.done()
    return config


def _strategies(top: Fields) -> tuple[str, ...]:
    names = top.str_list("strategies") or (AFFINITY,)
    for index, name in enumerate(names):
        check_strategy_name(name, field=f"strategies[{index}]")
    if len(set(names)) != len(names):
        raise top.error("strategies", f"names a strategy twice: {list(names)}")
    return names


def _health(fields: Fields) -> HealthConfig:
    default = HealthConfig()
    try:
        config = HealthConfig(
            heartbeat_interval_ms=fields.int_(
                "heartbeat_interval_ms", default.heartbeat_interval_ms, minimum=1
            ),
            suspect_after_ms=fields.int_("suspect_after_ms", default.suspect_after_ms, minimum=1),
            down_after_ms=fields.int_("down_after_ms", default.down_after_ms, minimum=1),
        )
    except ConfigError as error:
        raise ConfigError(f"health: {error}") from error
    fields.done()
    return config


def _scheduler(fields: Fields) -> SchedulerConfig:
    default = SchedulerConfig()
    aging_ms = fields.int_("aging_ms", default.aging_ms or 0)
    no_agent_ms = default.no_capable_agent_timeout_ms
    weights = fields.sub("tenant_weights")
    config = SchedulerConfig(
        levels=fields.int_("levels", default.levels, minimum=1),
        aging_ms=aging_ms or None,
        escalation_ms=fields.int_("escalation_ms", default.escalation_ms),
        max_held=fields.int_("max_held", default.max_held, minimum=1),
        reserved_top_share=fields.float_("reserved_top_share", 0.0, high=0.99),
        no_capable_agent_timeout_ms=fields.int_("no_capable_agent_timeout_ms", no_agent_ms or 0),
        tenant_weights=_weights(weights),
    )
    fields.done()
    return config


def _weights(fields: Fields) -> dict[str, float]:
    weights = {tenant: fields.positive(tenant) for tenant in fields.table_keys()}
    fields.done()
    return weights


def _routing(fields: Fields) -> RoutingConfig:
    default = RoutingConfig()
    config = RoutingConfig(
        hash_load_factor=fields.float_("hash_load_factor", default.hash_load_factor, low=1.0),
        virtual_nodes=fields.int_("virtual_nodes", default.virtual_nodes, minimum=1),
        zone_strict=fields.bool_("zone_strict", default.zone_strict),
        affinity_keys_max=fields.int_("affinity_keys_max", default.affinity_keys_max, minimum=1),
    )
    fields.done()
    return config
