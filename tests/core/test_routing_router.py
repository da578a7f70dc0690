"""The router facade: manual target, zones, affinity, forgetting agents, membership versions."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.model import AgentInfo, AgentState
from streams.core.routing import (
    PUSH_STRATEGIES,
    STRATEGY_NAMES,
    Route,
    RouteOutcome,
    Router,
    RoutingConfig,
)
from tests.core.test_routing_support import by_id, fleet_of, fleets, job

ROUTED, BUSY, NONE = RouteOutcome.ROUTED, RouteOutcome.BUSY, RouteOutcome.NO_CAPABLE_AGENT


@given(fleet=fleets(min_size=1), data=st.data())
def test_a_manual_target_is_the_only_agent_a_job_may_go_to(
    fleet: list[AgentInfo], data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(fleet))
    task = job(target_agent=target.agent_id)
    for strategy in STRATEGY_NAMES:
        route = Router(RoutingConfig(strategy=strategy)).route(task, fleet, 0, 0)
        if target.state is not AgentState.READY:
            assert route.outcome is NONE, strategy
        elif target.in_flight >= target.capacity and strategy not in PUSH_STRATEGIES:
            assert route.outcome is BUSY, strategy
        else:
            assert route == Route(ROUTED, target.agent_id, strategy)


def test_a_target_that_is_unknown_or_lacks_a_skill_is_no_capable_agent() -> None:
    fleet = fleet_of([4, 4], skills=frozenset({"cpu"}))
    router = Router(RoutingConfig(strategy="least-connections"))
    assert router.route(job(target_agent="ghost"), fleet, 0, 0).outcome is NONE
    gpu_job = job(target_agent="a0", required_skills=frozenset({"gpu"}))
    assert router.route(gpu_job, fleet, 0, 0).outcome is NONE


def test_the_busiest_agent_still_gets_the_jobs_that_target_it() -> None:
    fleet = fleet_of([10, 10, 10])
    fleet[2].in_flight = 9
    route = Router(RoutingConfig(strategy="least-connections")).route(
        job(target_agent="a2"), fleet, 0, 0
    )
    assert route.agent_id == "a2"


def _zoned_fleet() -> list[AgentInfo]:
    return [AgentInfo("eu-1", 1, zone="eu"), AgentInfo("us-1", 1, zone="us")]


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_the_zone_is_preferred_then_other_zones_take_over(strategy: str) -> None:
    fleet = _zoned_fleet()
    router = Router(RoutingConfig(strategy=strategy))
    assert router.route(job(zone="eu"), fleet, 0, 0).agent_id == "eu-1"
    fleet[0].in_flight = 1
    expected = "eu-1" if strategy in {"round-robin-push", "random-push"} else "us-1"
    assert router.route(job(zone="eu"), fleet, 0, 0).agent_id == expected


@pytest.mark.parametrize("strategy", ["least-connections", "affinity", "power-of-two-choices"])
def test_a_strict_zone_waits_for_its_agents_or_has_none(strategy: str) -> None:
    fleet = _zoned_fleet()
    router = Router(RoutingConfig(strategy=strategy, zone_strict=True))
    fleet[0].in_flight = 1
    assert router.route(job(zone="eu"), fleet, 0, 0).outcome is BUSY
    assert router.route(job(zone="asia"), fleet, 0, 0).outcome is NONE


def test_a_route_names_the_strategy_that_applied() -> None:
    route = Router(RoutingConfig(strategy="random")).route(job(), fleet_of([1]), 0, 0)
    assert route == Route(ROUTED, "a0", "random", None)
    busy = Router(RoutingConfig(strategy="random")).route(job(), fleet_of([0]), 0, 0)
    assert busy == Route(BUSY, None, "random", None)


def test_the_router_sees_agents_that_joined_in_a_new_version() -> None:
    fleet = fleet_of([1])
    router = Router(RoutingConfig(strategy="least-connections"))
    fleet[0].in_flight = 1
    assert router.route(job(), fleet, 0, 0).outcome is BUSY
    fleet.append(AgentInfo("late", 1))
    assert router.route(job(), fleet, 1, 0).agent_id == "late"


def test_the_router_sees_a_state_change_in_a_new_version() -> None:
    fleet = fleet_of([5])
    router = Router(RoutingConfig(strategy="round-robin"))
    assert router.route(job(), fleet, 0, 0).agent_id == "a0"
    fleet[0].state = AgentState.DRAINING
    assert router.route(job(), fleet, 1, 0).outcome is NONE
    fleet[0].state = AgentState.READY
    assert router.route(job(), fleet, 2, 0).agent_id == "a0"


def test_a_changed_agent_count_is_seen_even_without_a_version_bump() -> None:
    fleet = fleet_of([0])
    router = Router(RoutingConfig(strategy="least-connections"))
    assert router.route(job(), fleet, 7, 0).outcome is BUSY
    fleet.append(AgentInfo("newcomer", 1))
    assert router.route(job(), fleet, 7, 0).agent_id == "newcomer"


def _affinity_router(**fields: object) -> Router:
    return Router(RoutingConfig(strategy="affinity", **fields))  # type: ignore[arg-type]


def test_a_keyed_job_returns_to_its_agent() -> None:
    fleet = fleet_of([4] * 5)
    router = _affinity_router()
    first = router.route(job(1, affinity_key="k"), fleet, 0, 0)
    assert first.affinity_hit is False
    again = router.route(job(2, affinity_key="k"), fleet, 0, 0)
    assert (again.agent_id, again.affinity_hit) == (first.agent_id, True)


def test_a_key_moves_when_its_agent_drains_and_then_stays_where_it_moved() -> None:
    fleet = fleet_of([4] * 5)
    router = _affinity_router()
    home = by_id(fleet, router.route(job(affinity_key="k"), fleet, 0, 0).agent_id)
    home.state = AgentState.DRAINING
    moved = router.route(job(affinity_key="k"), fleet, 1, 0)
    assert moved.agent_id != home.agent_id and moved.affinity_hit is False
    home.state = AgentState.READY
    assert router.route(job(affinity_key="k"), fleet, 2, 0) == Route(
        ROUTED, moved.agent_id, "affinity", True
    )


@pytest.mark.parametrize(
    ("in_flight", "reason"), [(1, "one more exceeds ceil(1.0 * 2 / 4) = 1"), (4, "full")]
)
def test_a_key_leaves_its_agent_when_it_is_full_or_above_the_bound(
    in_flight: int, reason: str
) -> None:
    fleet = fleet_of([4, 4, 4, 4])
    router = _affinity_router(hash_load_factor=1.0)
    home = by_id(fleet, router.route(job(affinity_key="k"), fleet, 0, 0).agent_id)
    home.in_flight = in_flight
    route = router.route(job(affinity_key="k"), fleet, 0, 0)
    assert route.agent_id != home.agent_id and route.affinity_hit is False, reason


def test_a_job_without_a_key_goes_to_the_least_loaded_agent() -> None:
    fleet = fleet_of([4, 4, 4])
    fleet[0].in_flight, fleet[1].in_flight, fleet[2].in_flight = 2, 1, 3
    assert _affinity_router().route(job(), fleet, 0, 0) == Route(ROUTED, "a1", "affinity", None)


def test_affinity_remembers_at_most_the_configured_number_of_keys() -> None:
    fleet = fleet_of([100] * 5)
    router = _affinity_router(affinity_keys_max=2)
    for key in ("k1", "k2", "k3"):
        router.route(job(affinity_key=key), fleet, 0, 0)
    assert router.route(job(affinity_key="k3"), fleet, 0, 0).affinity_hit is True
    assert router.route(job(affinity_key="k1"), fleet, 0, 0).affinity_hit is False


def test_forgetting_an_agent_forgets_the_keys_it_held() -> None:
    fleet = fleet_of([100] * 5)
    router = _affinity_router()
    home = router.route(job(affinity_key="k"), fleet, 0, 0).agent_id
    assert home is not None
    router.forget(home)
    route = router.route(job(affinity_key="k"), fleet, 0, 0)
    assert (route.agent_id, route.affinity_hit) == (home, False)


@settings(max_examples=60, deadline=None)
@given(
    capacities=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    ops=st.lists(st.tuples(st.sampled_from("rrrcs"), st.sampled_from("abcdef")), max_size=60),
    data=st.data(),
)
def test_affinity_hits_exactly_when_the_remembered_agent_may_take_the_job(
    capacities: list[int], ops: list[tuple[str, str]], data: st.DataObject
) -> None:
    """A hit lands on the remembered agent; a miss happens only if that agent is unhealthy,
    full or would exceed its bounded-load bound (c = 1.25, shared by capacity)."""
    fleet = fleet_of(capacities)
    router = _affinity_router()
    remembered: dict[str, str] = {}
    version = 0
    for action, key in ops:
        if action == "c":
            busy = [agent for agent in fleet if agent.in_flight > 0]
            if busy:
                data.draw(st.sampled_from(busy)).in_flight -= 1
        elif action == "s":
            agent = data.draw(st.sampled_from(fleet))
            agent.state = data.draw(st.sampled_from([AgentState.READY, AgentState.SUSPECT]))
            version += 1
        else:
            _route_and_check(router, fleet, version, key, remembered)


def _route_and_check(
    router: Router, fleet: list[AgentInfo], version: int, key: str, remembered: dict[str, str]
) -> None:
    route = router.route(job(affinity_key=key), fleet, version, 0)
    if route.outcome is not ROUTED:
        return
    previous = remembered.get(key)
    may_stay = previous is not None and _may_take(by_id(fleet, previous), fleet)
    assert route.affinity_hit is may_stay
    if may_stay:
        assert route.agent_id == previous
    agent = by_id(fleet, route.agent_id)
    agent.in_flight += 1
    remembered[key] = agent.agent_id


def _may_take(agent: AgentInfo, fleet: list[AgentInfo]) -> bool:
    healthy = [a for a in fleet if a.state is AgentState.READY]
    if agent not in healthy or agent.in_flight >= agent.capacity:
        return False
    total = sum(a.in_flight for a in healthy)
    capacity_total = sum(a.capacity for a in healthy)
    bound = math.ceil(Fraction(1.25) * (total + 1) * agent.capacity / capacity_total)
    return agent.in_flight + 1 <= bound
