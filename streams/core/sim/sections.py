"""Parsing of a scenario's ``[[agents]]``, ``[[tasks]]`` and ``[arrivals]`` sections."""

from __future__ import annotations

from streams.core.sim.fields import Fields
from streams.core.sim.sharding import SHARDINGS
from streams.core.sim.spec import (
    ARRIVAL_PROCESSES,
    BURSTS,
    KEY_DISTRIBUTIONS,
    LOGNORMAL,
    UNIFORM,
    WORK_DISTRIBUTIONS,
    AgentGroup,
    Arrivals,
    AutoscaleSpec,
    RatePhase,
    TaskClass,
    Variant,
    WorkSpec,
)

SHARE_TOLERANCE = 1e-6
"""How far from 1 the shares of the task mix may sum (rounding in hand-written decimals)."""


def parse_agents(top: Fields) -> tuple[AgentGroup, ...]:
    """The ``[[agents]]`` groups; names must be unique (agent ids derive from them)."""
    groups = tuple(
        _agent_group(Fields(table, f"agents[{index}]"))
        for index, table in enumerate(top.tables("agents"))
    )
    names = [group.name for group in groups]
    if len(set(names)) != len(names):
        raise top.error("agents", f"group names must be unique, got {names}")
    return groups


def _agent_group(fields: Fields) -> AgentGroup:
    group = AgentGroup(
        name=fields.str_("name"),
        count=fields.int_("count", 1, minimum=1),
        capacity=fields.int_("capacity", 1, minimum=1),
        speed=fields.positive("speed", 1.0),
        skills=frozenset(fields.str_list("skills")),
        zone=fields.opt_str("zone"),
        weight=fields.positive("weight", 1.0),
        cost_per_task=fields.float_("cost_per_task", 0.0),
        failure_probability=fields.float_("failure_probability", 0.0, high=0.99),
        crash_at_ms=fields.opt_int("crash_at_ms"),
        recover_at_ms=fields.opt_int("recover_at_ms"),
        prefetch=fields.int_("prefetch", 0),
        cost_per_hour=fields.float_("cost_per_hour", 1.0),
    )
    if group.recover_at_ms is not None and (
        group.crash_at_ms is None or group.recover_at_ms <= group.crash_at_ms
    ):
        raise fields.error("recover_at_ms", "needs crash_at_ms and must come after it")
    fields.done()
    return group


def parse_tasks(top: Fields, *, levels: int) -> tuple[TaskClass, ...]:
    """The ``[[tasks]]`` mix; the shares must sum to 1 (see ``SHARE_TOLERANCE``)."""
    classes = tuple(
        _task_class(Fields(table, f"tasks[{index}]"), levels)
        for index, table in enumerate(top.tables("tasks"))
    )
    total = sum(task.share for task in classes)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        shares = [task.share for task in classes]
        raise top.error("tasks", f"the shares must sum to 1, got {total!r} from {shares}")
    return classes


def _task_class(fields: Fields, levels: int) -> TaskClass:
    priority = fields.int_("priority", 0)
    if priority >= levels:
        raise fields.error("priority", f"must be < scheduler.levels ({levels}), got {priority}")
    keys = fields.int_("affinity_keys", 0)
    task = TaskClass(
        share=fields.positive("share"),
        task_type=fields.str_("type", "default"),
        priority=priority,
        work=_work(fields.sub("work")),
        deadline_ms=fields.opt_int("deadline_ms", minimum=1),
        ttl_ms=fields.opt_int("ttl_ms", minimum=1),
        required_skills=frozenset(fields.str_list("required_skills")),
        tenants=fields.str_list("tenants") or ("default",),
        zone=fields.opt_str("zone"),
        max_attempts=fields.int_("max_attempts", 3, minimum=1),
        affinity_keys=keys,
        affinity=fields.choice("affinity", KEY_DISTRIBUTIONS, UNIFORM),
        zipf_exponent=fields.positive("zipf_exponent", 1.0),
        ordering_keys=fields.int_("ordering_keys", 0),
    )
    fields.done()
    return task


def _work(fields: Fields) -> WorkSpec:
    distribution = fields.choice("distribution", WORK_DISTRIBUTIONS)
    mean = fields.positive("mean")
    sigma = fields.positive("sigma") if distribution == LOGNORMAL else 0.0
    fields.done()
    return WorkSpec(distribution, mean, sigma)


def parse_arrivals(
    fields: Fields, agents: tuple[AgentGroup, ...], tasks: tuple[TaskClass, ...]
) -> Arrivals:
    """``[arrivals]``: one of ``rate_per_s``/``load`` and one of ``tasks``/``duration_ms``, or
    ``phases``: a list of ``{duration_ms, rate_per_s | load}``, one after the other."""
    process = fields.choice("process", ARRIVAL_PROCESSES, "poisson")
    if fields.has("phases"):
        return _phased(fields, process, agents, tasks)
    arrivals = Arrivals(
        process=process,
        rate_per_s=_rate(fields, agents, tasks),
        tasks=fields.opt_int("tasks", minimum=1),
        duration_ms=fields.opt_int("duration_ms", minimum=1),
        burst_size=fields.int_("burst_size", 1, minimum=1),
    )
    if (arrivals.tasks is None) == (arrivals.duration_ms is None):
        raise fields.error("tasks", "give exactly one of tasks and duration_ms")
    if process != BURSTS and arrivals.burst_size != 1:
        raise fields.error("burst_size", f"only applies to process = {BURSTS!r}")
    fields.done()
    return arrivals


def _phased(
    fields: Fields, process: str, agents: tuple[AgentGroup, ...], tasks: tuple[TaskClass, ...]
) -> Arrivals:
    for key in ("rate_per_s", "load", "tasks", "duration_ms"):
        if fields.has(key):
            raise fields.error(key, "not with phases (each phase has its own rate and duration)")
    phases = []
    for index, table in enumerate(fields.tables("phases")):
        phase = Fields(table, fields.name(f"phases[{index}]"))
        duration_ms = phase.int_("duration_ms", minimum=1)
        phases.append(RatePhase(duration_ms, _rate(phase, agents, tasks)))
        phase.done()
    total_ms = sum(phase.duration_ms for phase in phases)
    mean = sum(phase.rate_per_s * phase.duration_ms for phase in phases) / total_ms
    arrivals = Arrivals(
        process=process,
        rate_per_s=mean,
        duration_ms=total_ms,
        burst_size=fields.int_("burst_size", 1, minimum=1),
        phases=tuple(phases),
    )
    if process != BURSTS and arrivals.burst_size != 1:
        raise fields.error("burst_size", f"only applies to process = {BURSTS!r}")
    fields.done()
    return arrivals


def parse_autoscale(top: Fields, agents: tuple[AgentGroup, ...]) -> AutoscaleSpec | None:
    """``[autoscale]`` (optional): the group it scales and the autoscaler's settings."""
    if not top.has("autoscale"):
        return None
    fields = top.sub("autoscale")
    default = AutoscaleSpec(group="")
    spec = AutoscaleSpec(
        group=fields.str_("group"),
        initial=fields.int_("initial", default.initial),
        startup_ms=fields.int_("startup_ms", default.startup_ms),
        interval_ms=fields.int_("interval_ms", default.interval_ms, minimum=1),
        min_agents=fields.int_("min_agents", default.min_agents),
        max_agents=fields.opt_int("max_agents", minimum=1),
        headroom=fields.float_("headroom", default.headroom),
        drain_s=fields.positive("drain_s", default.drain_s),
        window_ms=fields.int_("window_ms", default.window_ms, minimum=1),
        cooldown_ms=fields.int_("cooldown_ms", default.cooldown_ms),
    )
    if spec.group not in {group.name for group in agents}:
        raise fields.error("group", f"no agent group is named {spec.group!r}")
    if spec.max_agents is not None and spec.max_agents < spec.min_agents:
        raise fields.error("max_agents", f"must be >= min_agents ({spec.min_agents})")
    fields.done()
    return spec


def _rate(fields: Fields, agents: tuple[AgentGroup, ...], tasks: tuple[TaskClass, ...]) -> float:
    """Tasks per second, given directly or as ``load``: a fraction of what the agents can run."""
    if fields.has("rate_per_s") == fields.has("load"):
        raise fields.error("rate_per_s", "give exactly one of rate_per_s and load")
    if fields.has("rate_per_s"):
        return fields.positive("rate_per_s")
    load = fields.positive("load")
    work_rate = sum(group.work_rate for group in agents)
    mean_work = sum(task.share * task.work.mean for task in tasks)
    return load * work_rate / mean_work


def parse_variants(top: Fields, default: Variant) -> tuple[Variant, ...]:
    """The ``[[variants]]`` (optional); each defaults to the scenario's shards, instances,
    model and stealing (``default``)."""
    if not top.has("variants"):
        return ()
    variants = tuple(
        _variant(Fields(table, f"variants[{index}]"), default)
        for index, table in enumerate(top.tables("variants"))
    )
    names = [variant.name for variant in variants]
    if len(set(names)) != len(names):
        raise top.error("variants", f"names must be unique, got {names}")
    return variants


def _variant(fields: Fields, default: Variant) -> Variant:
    variant = Variant(
        name=fields.str_("name"),
        dispatcher_shards=fields.int_("dispatcher_shards", default.dispatcher_shards, minimum=1),
        sharding=fields.choice("sharding", SHARDINGS, default.sharding),
        steal_ms=fields.int_("steal_ms", default.steal_ms),
        dispatcher_instances=fields.int_("dispatcher_instances", default.dispatcher_instances),
        autoscale=fields.bool_("autoscale", default.autoscale),
        preempt=fields.bool_("preempt", default.preempt),
    )
    fields.done()
    return variant
