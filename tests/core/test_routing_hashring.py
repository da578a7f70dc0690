"""Consistent hashing: stable positions, few keys moved on membership change, bounded loads."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.model import AgentState
from streams.core.routing import HashRing, RouteOutcome, Router, RoutingConfig, stable_hash
from tests.core.test_routing_support import by_id, fleet_of, job

KEYS = [f"key-{index}" for index in range(2000)]
agent_ids = st.text("abcdefghij0123456789-", min_size=1, max_size=12)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("", 16476032584258269876),
        ("task-1", 17044333627118830467),
        ("tenant/acme", 10954138009657572570),
        ("ключ", 5536099946253895712),
    ],
)
def test_stable_hash_is_the_same_in_every_process_and_release(key: str, expected: int) -> None:
    """Pinned values: if these change, every key in production moves on upgrade."""
    assert stable_hash(key) == expected


def _owners(ring: HashRing) -> dict[str, str | None]:
    return {key: ring.owner(stable_hash(key)) for key in KEYS}


@settings(max_examples=15, deadline=None)
@given(ids=st.sets(agent_ids, min_size=10, max_size=60), newcomer=agent_ids)
def test_adding_an_agent_moves_few_keys_and_only_to_it(ids: set[str], newcomer: str) -> None:
    ids.discard(newcomer)
    before = _owners(HashRing(ids, 100))
    after = _owners(HashRing(ids | {newcomer}, 100))
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == newcomer for key in moved)
    assert len(moved) / len(KEYS) <= 3 / (len(ids) + 1)


@settings(max_examples=15, deadline=None)
@given(ids=st.sets(agent_ids, min_size=10, max_size=60), data=st.data())
def test_removing_an_agent_moves_only_its_keys(ids: set[str], data: st.DataObject) -> None:
    leaver = data.draw(st.sampled_from(sorted(ids)))
    before = _owners(HashRing(ids, 100))
    after = _owners(HashRing(ids - {leaver}, 100))
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(before[key] == leaver for key in moved)
    assert len(moved) / len(KEYS) <= 3 / len(ids)


def test_with_fifty_agents_about_one_key_in_fifty_moves() -> None:
    ids = {f"agent-{index}" for index in range(50)}
    before = _owners(HashRing(ids, 100))
    after = _owners(HashRing(ids | {"agent-50"}, 100))
    share = sum(before[key] != after[key] for key in KEYS) / len(KEYS)
    assert 0.5 / 51 <= share <= 3 / 51


@settings(max_examples=30, deadline=None)
@given(
    start=st.sets(agent_ids, max_size=12),
    end=st.sets(agent_ids, min_size=1, max_size=12),
    virtual_nodes=st.integers(1, 8),
)
def test_a_changed_ring_is_laid_out_as_a_ring_built_afresh(
    start: set[str], end: set[str], virtual_nodes: int
) -> None:
    """Dispatchers with different membership histories still agree on every key."""
    changed = HashRing(start, virtual_nodes).with_members(frozenset(end))
    fresh = HashRing(end, virtual_nodes)
    assert len(changed) == len(fresh) == len(end) * virtual_nodes
    for point in range(0, 2**64, 2**58):
        assert changed.owner(point) == fresh.owner(point)
        assert list(changed.walk(point)) == list(fresh.walk(point))


@given(ids=st.sets(agent_ids, min_size=1, max_size=20), key=st.text(max_size=8))
def test_a_walk_meets_every_agent_once_starting_with_the_owner(ids: set[str], key: str) -> None:
    ring = HashRing(ids, 5)
    walk = list(ring.walk(stable_hash(key)))
    assert sorted(walk) == sorted(ids)
    assert walk[0] == ring.owner(stable_hash(key))


def test_an_empty_ring_owns_nothing() -> None:
    ring = HashRing([], 10)
    assert ring.owner(123) is None
    assert list(ring.walk(123)) == []


@pytest.mark.parametrize("strategy", ["consistent-hash", "affinity"])
def test_on_an_idle_fleet_a_key_goes_to_its_ring_owner(strategy: str) -> None:
    fleet = fleet_of([4] * 8)
    ring = HashRing((agent.agent_id for agent in fleet), 100)
    router = Router(RoutingConfig(strategy=strategy))
    for key in KEYS[:50]:
        route = router.route(job(affinity_key=key), fleet, 0, 0)
        assert route.agent_id == ring.owner(stable_hash(key))


def _bound(load_factor: float, total: int, capacity: int, capacity_total: int) -> int:
    """``ceil(c * (total + 1) * capacity / capacity_total)`` in exact arithmetic."""
    return math.ceil(Fraction(load_factor) * (total + 1) * capacity / capacity_total)


operations = st.lists(
    st.tuples(st.booleans(), st.sampled_from(["hot", "warm", "a", "b", "c", "d"])),
    min_size=1,
    max_size=120,
)


@pytest.mark.parametrize("strategy", ["consistent-hash", "affinity"])
@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 12),
    load_factor=st.floats(1.0, 3.0),
    ops=operations,
    data=st.data(),
)
def test_bounded_loads_never_exceed_ceil_c_times_the_average(
    strategy: str,
    size: int,
    load_factor: float,
    ops: list[tuple[bool, str]],
    data: st.DataObject,
) -> None:
    """Equal capacities: after each assignment, load <= ceil(c * (total + 1) / agents)."""
    fleet = fleet_of([1000] * size)
    router = Router(RoutingConfig(strategy=strategy, hash_load_factor=load_factor))
    for number, (assign, key) in enumerate(ops):
        busy = [agent for agent in fleet if agent.in_flight > 0]
        if not assign and busy:
            data.draw(st.sampled_from(busy)).in_flight -= 1
            continue
        total = sum(agent.in_flight for agent in fleet)
        route = router.route(job(number, affinity_key=key), fleet, 0, 0)
        agent = by_id(fleet, route.agent_id)
        assert agent.in_flight + 1 <= math.ceil(Fraction(load_factor) * (total + 1) / size)
        agent.in_flight += 1


@pytest.mark.parametrize("strategy", ["consistent-hash", "affinity"])
@settings(max_examples=40, deadline=None)
@given(
    capacities=st.lists(st.integers(1, 12), min_size=1, max_size=10),
    load_factor=st.floats(1.0, 2.0),
    ops=operations,
    data=st.data(),
)
def test_with_unequal_capacities_the_bound_is_shared_by_capacity(
    strategy: str,
    capacities: list[int],
    load_factor: float,
    ops: list[tuple[bool, str]],
    data: st.DataObject,
) -> None:
    """Within ceil(c * (total + 1) * capacity / total capacity), and never BUSY with a free slot."""
    fleet = fleet_of(capacities)
    router = Router(RoutingConfig(strategy=strategy, hash_load_factor=load_factor))
    for number, (assign, key) in enumerate(ops):
        busy = [agent for agent in fleet if agent.in_flight > 0]
        if not assign and busy:
            data.draw(st.sampled_from(busy)).in_flight -= 1
            continue
        total = sum(agent.in_flight for agent in fleet)
        route = router.route(job(number, affinity_key=key), fleet, 0, 0)
        if total == sum(capacities):
            assert route.outcome is RouteOutcome.BUSY
            continue
        agent = by_id(fleet, route.agent_id)
        bound = _bound(load_factor, total, agent.capacity, sum(capacities))
        assert agent.in_flight + 1 <= min(bound, agent.capacity)
        agent.in_flight += 1


def test_a_hot_key_spills_past_its_agent_at_the_bound() -> None:
    fleet = fleet_of([100] * 4)
    router = Router(RoutingConfig(strategy="consistent-hash", hash_load_factor=1.25))
    for number in range(40):
        by_id(
            fleet, router.route(job(number, affinity_key="hot"), fleet, 0, 0).agent_id
        ).in_flight += 1
    assert max(agent.in_flight for agent in fleet) <= math.ceil(1.25 * 40 / 4)
    assert min(agent.in_flight for agent in fleet) > 0


def test_unhealthy_agents_stay_on_the_ring_and_get_their_keys_back() -> None:
    """A SUSPECT agent's keys walk on; when it is READY again, the same keys return."""
    fleet = fleet_of([4] * 6)
    router = Router(RoutingConfig(strategy="consistent-hash"))
    before = {key: router.route(job(affinity_key=key), fleet, 0, 0).agent_id for key in KEYS[:60]}
    fleet[2].state = AgentState.SUSPECT
    during = {key: router.route(job(affinity_key=key), fleet, 1, 0).agent_id for key in KEYS[:60]}
    fleet[2].state = AgentState.READY
    after = {key: router.route(job(affinity_key=key), fleet, 2, 0).agent_id for key in KEYS[:60]}
    assert "a2" not in during.values()
    assert {key for key in before if before[key] != during[key]} == {
        key for key in before if before[key] == "a2"
    }
    assert after == before


def test_a_key_without_affinity_hashes_on_the_task_id() -> None:
    fleet = fleet_of([4] * 8)
    ring = HashRing((agent.agent_id for agent in fleet), 100)
    router = Router(RoutingConfig(strategy="consistent-hash"))
    for number in range(30):
        route = router.route(job(number), fleet, 0, 0)
        assert route.agent_id == ring.owner(stable_hash(f"task-{number}"))
