"""Routing rules: first match wins, pools narrow the candidates, fallback chains as documented."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.model import AgentInfo, AgentState, Job
from streams.core.routing import (
    STRATEGY_NAMES,
    Fallback,
    Route,
    RouteOutcome,
    Router,
    RoutingConfig,
    RoutingRule,
)
from tests.core.test_routing_support import SKILLS, ZONES, by_id, fleets, job, jobs

ROUTED, BUSY, NONE = RouteOutcome.ROUTED, RouteOutcome.BUSY, RouteOutcome.NO_CAPABLE_AGENT


def _fleet() -> list[AgentInfo]:
    return [
        AgentInfo("gold-1", 2, labels={"tier": "gold"}),
        AgentInfo("gold-2", 2, labels={"tier": "gold"}),
        AgentInfo("basic-1", 2, labels={"tier": "basic"}),
    ]


def _router(*rules: RoutingRule, strategy: str = "least-connections") -> Router:
    return Router(RoutingConfig(strategy=strategy, rules=rules))


def test_the_first_matching_rule_wins() -> None:
    router = _router(
        RoutingRule(match_type="render", strategy="random"),
        RoutingRule(match_type="render", strategy="round-robin"),
        RoutingRule(strategy="capacity"),
    )
    assert router.route(job(task_type="render"), _fleet(), 0, 0).strategy == "random"
    assert router.route(job(task_type="index"), _fleet(), 0, 0).strategy == "capacity"


def test_a_rule_matches_only_when_every_criterion_does() -> None:
    rule = RoutingRule(match_type="render", match_tenant="acme", match_header=("lane", "fast"))
    headers = (("lane", "fast"),)
    assert rule.matches(job(task_type="render", tenant="acme", headers=headers))
    assert not rule.matches(job(task_type="render", tenant="acme"))
    assert not rule.matches(job(task_type="render", tenant="globex", headers=headers))
    assert not rule.matches(job(task_type="index", tenant="acme", headers=headers))
    assert RoutingRule().matches(job())


def test_a_job_no_rule_matches_uses_the_default_strategy_on_every_agent() -> None:
    router = _router(RoutingRule(match_tenant="acme", pool=frozenset({"gold-1"})))
    route = router.route(job(tenant="globex"), _fleet(), 0, 0)
    assert route == Route(ROUTED, "basic-1", "least-connections")  # ties: smaller id


@pytest.mark.parametrize(
    ("pool", "allowed"),
    [
        (frozenset({"basic-1"}), {"basic-1"}),
        (frozenset({"tier=gold"}), {"gold-1", "gold-2"}),
        (frozenset({"tier=gold", "basic-1"}), {"gold-1", "gold-2", "basic-1"}),
    ],
)
def test_a_pool_selects_agents_by_id_or_label(pool: frozenset[str], allowed: set[str]) -> None:
    fleet = _fleet()
    router = _router(RoutingRule(pool=pool), strategy="round-robin")
    chosen = set()
    for number in range(2 * len(fleet)):
        route = router.route(job(number), fleet, 0, 0)
        if route.agent_id is not None:
            chosen.add(route.agent_id)
            by_id(fleet, route.agent_id).in_flight += 1
    assert chosen == allowed


def _drained_pool(*fallback: Fallback) -> RouteOutcome | str | None:
    """Route a job whose pool (the gold agents) is all DRAINING; basic-1 is healthy."""
    fleet = _fleet()
    for agent in fleet[:2]:
        agent.state = AgentState.DRAINING
    router = _router(RoutingRule(pool=frozenset({"tier=gold"}), fallback=fallback))
    route = router.route(job(), fleet, 0, 0)
    return route.agent_id if route.outcome is ROUTED else route.outcome


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        ((), NONE),
        ((Fallback.WIDEN,), "basic-1"),
        ((Fallback.WAIT,), BUSY),
        ((Fallback.DEAD_LETTER,), NONE),
        ((Fallback.WIDEN, Fallback.WAIT), "basic-1"),
    ],
)
def test_the_fallback_chain_applies_when_the_pool_has_no_capable_agent(
    chain: tuple[Fallback, ...], expected: RouteOutcome | str
) -> None:
    assert _drained_pool(*chain) == expected


@pytest.mark.parametrize(
    ("chain", "expected"),
    [((Fallback.WIDEN,), NONE), ((Fallback.WIDEN, Fallback.WAIT), BUSY)],
)
def test_the_chain_goes_on_when_widening_finds_nobody(
    chain: tuple[Fallback, ...], expected: RouteOutcome
) -> None:
    fleet = _fleet()
    router = _router(RoutingRule(pool=frozenset({"tier=gold"}), fallback=chain))
    gpu_job = job(required_skills=frozenset({"gpu"}))
    assert router.route(gpu_job, fleet, 0, 0).outcome is expected


def test_a_busy_pool_makes_the_job_wait_rather_than_widen() -> None:
    fleet = _fleet()
    for agent in fleet[:2]:
        agent.in_flight = agent.capacity
    router = _router(RoutingRule(pool=frozenset({"tier=gold"}), fallback=(Fallback.WIDEN,)))
    assert router.route(job(), fleet, 0, 0).outcome is BUSY


def test_late_binding_follows_the_strategy_the_rules_choose() -> None:
    router = _router(RoutingRule(match_type="legacy", strategy="random-push"))
    assert router.late_binding(job(task_type="legacy")) is False
    assert router.late_binding(job(task_type="render")) is True
    pushed = router.route(job(task_type="legacy"), [AgentInfo("full", 1, in_flight=1)], 0, 0)
    assert pushed == Route(ROUTED, "full", "random-push")


def test_a_pool_selects_agents_by_skill_or_zone_for_tasks_that_ask_for_neither() -> None:
    fleet = [
        AgentInfo("cpu-1", 2, zone="us"),
        AgentInfo("gpu-1", 2, skills=frozenset({"gpu"}), zone="us"),
        AgentInfo("eu-1", 2, zone="eu"),
    ]
    render = RoutingRule(match_type="render", pool=frozenset({"skill=gpu"}), fallback=("WAIT",))
    local = RoutingRule(match_type="invoice", pool=frozenset({"zone=eu"}))
    router = _router(render, local)
    assert router.route(job(task_type="render"), fleet, 0, 0).agent_id == "gpu-1"
    assert router.route(job(task_type="invoice"), fleet, 0, 0).agent_id == "eu-1"
    assert router.route(job(task_type="index"), fleet, 0, 0).agent_id == "cpu-1"
    busy_gpu = [fleet[0], AgentInfo("gpu-1", 2, skills=frozenset({"gpu"}), in_flight=2)]
    assert router.route(job(task_type="render"), busy_gpu, 0, 0).outcome is BUSY


rule_lists = st.lists(
    st.builds(
        RoutingRule,
        match_type=st.none() | st.sampled_from(["render", "index"]),
        match_tenant=st.none() | st.sampled_from(["acme", "globex"]),
        match_header=st.none() | st.just(("lane", "fast")),
        pool=st.none()
        | st.sampled_from(
            [
                frozenset({"tier=gold"}),
                frozenset({"agent-1"}),
                frozenset({f"skill={SKILLS[0]}"}),
                frozenset({f"zone={ZONES[0]}", "agent-2"}),
            ]
        ),
        strategy=st.none() | st.sampled_from(STRATEGY_NAMES),
        fallback=st.sampled_from([(), (Fallback.WIDEN,), (Fallback.WAIT,)]),
    ),
    max_size=4,
)


def _in_pool(agent: AgentInfo, pool: frozenset[str] | None) -> bool:
    if pool is None or agent.agent_id in pool or f"tier={agent.labels.get('tier')}" in pool:
        return True
    return any(f"skill={s}" in pool for s in agent.skills) or f"zone={agent.zone}" in pool


@given(rules=rule_lists, fleet=fleets(min_size=1), task=jobs())
def test_routes_follow_the_first_matching_rule_its_pool_and_its_fallback(
    rules: list[RoutingRule], fleet: list[AgentInfo], task: Job
) -> None:
    router = Router(RoutingConfig(strategy="least-connections", rules=tuple(rules)))
    rule = next((r for r in rules if r.matches(task)), RoutingRule())
    route = router.route(task, fleet, 0, 0)
    assert route.strategy == (rule.strategy or "least-connections")
    capable = [a for a in fleet if a.state is AgentState.READY and a.can_run(task)]
    in_pool = [a for a in capable if _in_pool(a, rule.pool)]
    widened = not in_pool and Fallback.WIDEN in rule.fallback
    if not in_pool and Fallback.WAIT in rule.fallback:
        assert route.outcome is BUSY
    elif not in_pool and not (widened and capable):
        assert route.outcome is NONE
    if route.outcome is ROUTED:
        agent = by_id(fleet, route.agent_id)
        assert agent in (capable if widened else in_pool)
