"""Properties every strategy keeps, and the specific promise of each strategy."""

from __future__ import annotations

import collections
import copy
import dataclasses
import statistics
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.model import AgentInfo, AgentState, Job
from streams.core.routing import (
    PUSH_STRATEGIES,
    STRATEGY_NAMES,
    Route,
    RouteOutcome,
    Router,
    RoutingConfig,
)
from tests.core.test_routing_support import (
    agents,
    by_id,
    fleet_of,
    fleets,
    free,
    job,
    jobs,
    zone_tiers,
)

LATE_BINDING = [name for name in STRATEGY_NAMES if name not in PUSH_STRATEGIES]
PUSH = sorted(PUSH_STRATEGIES)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A fleet and what happens to it: routes, completions, state changes, joins and leaves.

    Drawn once and replayed against every strategy on a fresh copy of the fleet, as a registry
    and a scheduler would drive the router.
    """

    fleet: list[AgentInfo]
    steps: list[tuple[str, object]]
    zone_strict: bool


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    fleet = draw(fleets())
    steps: list[tuple[str, object]] = []
    for number in range(draw(st.integers(1, 15))):
        action = draw(st.sampled_from(("route", "route", "route", "complete", "change", "join")))
        if action == "route":
            steps.append((action, draw(jobs(number, fleet_size=len(fleet) + number))))
        elif action == "join":
            steps.append((action, draw(agents(len(fleet) + number))))
        elif action == "change":
            steps.append((action, (draw(st.integers(0, 20)), draw(st.sampled_from(AgentState)))))
        else:
            steps.append((draw(st.sampled_from(("complete", "leave"))), draw(st.integers(0, 20))))
    return Scenario(fleet, steps, draw(st.booleans()))


def replay(scenario: Scenario, strategy: str) -> list[str | None]:
    """Run the scenario with ``strategy``, checking every route; return the agents chosen."""
    fleet = copy.deepcopy(scenario.fleet)
    router = Router(RoutingConfig(strategy=strategy, zone_strict=scenario.zone_strict, seed=3))
    version = 0
    chosen: list[str | None] = []
    for action, argument in scenario.steps:
        if action == "route":
            assert isinstance(argument, Job)
            route = router.route(argument, fleet, version, now_ms=len(chosen))
            check_route(route, argument, fleet, strategy, strict=scenario.zone_strict)
            chosen.append(route.agent_id)
        else:
            version += apply_change(action, argument, fleet, router)
    return chosen


def check_route(
    route: Route, task: Job, fleet: list[AgentInfo], strategy: str, *, strict: bool
) -> None:
    """The oracle: ROUTED exactly when an eligible agent exists, to one of the preferred zone."""
    late = strategy not in PUSH_STRATEGIES
    tiers = zone_tiers(task, fleet, strict=strict)
    eligible = [free(tier) if late else tier for tier in tiers]
    context = f"{strategy}: {task} -> {route}"
    if not any(tiers):
        assert route.outcome is RouteOutcome.NO_CAPABLE_AGENT, context
    elif not any(eligible):
        assert route.outcome is RouteOutcome.BUSY, context
    else:
        assert route.outcome is RouteOutcome.ROUTED, context
        preferred = next(tier for tier in eligible if tier)
        agent = by_id(fleet, route.agent_id)
        assert agent.agent_id in {a.agent_id for a in preferred}, context
        agent.in_flight += 1


def apply_change(action: str, argument: object, fleet: list[AgentInfo], router: Router) -> int:
    """Apply a registry event; return how much the membership version moves (in_flight: 0)."""
    if action == "join":
        assert isinstance(argument, AgentInfo)
        fleet.append(copy.deepcopy(argument))
        return 1
    if not fleet:
        return 0
    if action == "change":
        assert isinstance(argument, tuple)
        fleet[argument[0] % len(fleet)].state = argument[1]
        return 1
    assert isinstance(argument, int)
    if action == "leave":
        router.forget(fleet.pop(argument % len(fleet)).agent_id)
        return 1
    busy = [agent for agent in fleet if agent.in_flight > 0]
    if busy:
        busy[argument % len(busy)].in_flight -= 1
    return 0


@settings(max_examples=150)
@given(scenario=scenarios())
def test_every_strategy_routes_exactly_when_an_eligible_agent_exists(scenario: Scenario) -> None:
    """Late binding: never a busy, unhealthy or incapable agent, BUSY only when all capable
    agents are full. Push baselines: any healthy capable agent, even over capacity. All: the
    job's zone first, the manual target only, NO_CAPABLE_AGENT only when nobody can run it."""
    for strategy in STRATEGY_NAMES:
        replay(scenario, strategy)


@settings(max_examples=50)
@given(scenario=scenarios())
def test_same_seed_and_inputs_give_the_same_decisions(scenario: Scenario) -> None:
    for strategy in STRATEGY_NAMES:
        assert replay(scenario, strategy) == replay(scenario, strategy), strategy


@pytest.mark.parametrize("strategy", PUSH)
def test_push_baselines_overfill_agents_and_do_not_bind_late(strategy: str) -> None:
    fleet = fleet_of([1, 1])
    router = Router(RoutingConfig(strategy=strategy))
    for number in range(6):
        route = router.route(job(number), fleet, 0, now_ms=0)
        by_id(fleet, route.agent_id).in_flight += 1
    assert sum(agent.in_flight for agent in fleet) == 6
    assert not router.late_binding(job())


@pytest.mark.parametrize("strategy", LATE_BINDING)
def test_late_binding_strategies_say_so(strategy: str) -> None:
    assert Router(RoutingConfig(strategy=strategy)).late_binding(job())


@given(capacities=st.lists(st.integers(1, 3), min_size=1, max_size=8), rounds=st.integers(1, 3))
def test_round_robin_gives_every_free_agent_one_turn_per_cycle(
    capacities: list[int], rounds: int
) -> None:
    fleet = fleet_of([capacity + rounds for capacity in capacities])
    router = Router(RoutingConfig(strategy="round-robin"))
    for number in range(rounds):
        picked = [router.route(job(number), fleet, 0, 0).agent_id for _ in fleet]
        assert sorted(picked, key=str) == sorted(agent.agent_id for agent in fleet)


@given(weights=st.lists(st.integers(1, 6), min_size=1, max_size=6))
def test_weighted_picks_in_proportion_to_integer_weights_over_a_full_cycle(
    weights: list[int],
) -> None:
    fleet = [AgentInfo(f"a{i}", 100, weight=float(w)) for i, w in enumerate(weights)]
    router = Router(RoutingConfig(strategy="weighted"))
    for _cycle in range(2):
        picks = [router.route(job(n), fleet, 0, 0).agent_id for n in range(sum(weights))]
        counts = collections.Counter(picks)
        assert [counts[agent.agent_id] for agent in fleet] == weights


def test_weighted_interleaves_like_nginx() -> None:
    """nginx's documented sequence for weights {a: 5, b: 1, c: 1} is a a b a c a a."""
    fleet = [AgentInfo(name, 10, weight=w) for name, w in (("a", 5.0), ("b", 1.0), ("c", 1.0))]
    router = Router(RoutingConfig(strategy="weighted"))
    picks = "".join(str(router.route(job(n), fleet, 0, 0).agent_id) for n in range(14))
    assert picks == "aabacaa" * 2


def test_weighted_skips_a_full_agent_without_owing_it_a_burst() -> None:
    fleet = [AgentInfo("a", 10, weight=1.0), AgentInfo("b", 10, weight=1.0, in_flight=10)]
    router = Router(RoutingConfig(strategy="weighted"))
    assert [router.route(job(n), fleet, 0, 0).agent_id for n in range(3)] == ["a"] * 3
    fleet[1].in_flight = 0
    picks = [router.route(job(n), fleet, 0, 0).agent_id for n in range(4)]
    assert collections.Counter(picks) == {"a": 2, "b": 2}


def _load_key(agent: AgentInfo) -> tuple[float, str]:
    return agent.in_flight / agent.capacity, agent.agent_id


@given(fleet=fleets(min_size=1), task=jobs())
def test_least_connections_picks_the_lowest_relative_load(
    fleet: list[AgentInfo], task: Job
) -> None:
    route = Router(RoutingConfig(strategy="least-connections")).route(task, fleet, 0, 0)
    eligible = [free(tier) for tier in zone_tiers(task, fleet, strict=False)]
    preferred = next((tier for tier in eligible if tier), None)
    if preferred is None:
        assert route.agent_id is None
    else:
        assert route.agent_id == min(preferred, key=_load_key).agent_id


@given(fleet=fleets(min_size=1), task=jobs())
def test_capacity_picks_the_most_free_slots(fleet: list[AgentInfo], task: Job) -> None:
    route = Router(RoutingConfig(strategy="capacity")).route(task, fleet, 0, 0)
    eligible = [free(tier) for tier in zone_tiers(task, fleet, strict=False)]
    preferred = next((tier for tier in eligible if tier), None)
    if preferred is not None:
        best = min(preferred, key=lambda a: (a.in_flight - a.capacity, -a.capacity, a.agent_id))
        assert route.agent_id == best.agent_id


def test_capacity_prefers_absolute_room_over_relative_load() -> None:
    fleet = [AgentInfo("small-idle", 2), AgentInfo("large-half-full", 8, in_flight=4)]
    assert Router(RoutingConfig(strategy="capacity")).route(job(), fleet, 0, 0).agent_id == (
        "large-half-full"
    )


@given(
    pair=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 4)), min_size=2, max_size=2),
    full=st.integers(0, 4),
    seed=st.integers(0, 2**32),
)
def test_power_of_two_choices_with_two_free_agents_takes_the_less_loaded(
    pair: list[tuple[int, int]], full: int, seed: int
) -> None:
    """With exactly two eligible agents, both are always the two choices."""
    fleet = [
        AgentInfo(f"a{i}", capacity + used, in_flight=used)
        for i, (capacity, used) in enumerate(pair)
    ]
    fleet += [AgentInfo(f"full{i}", 2, in_flight=2) for i in range(full)]
    route = Router(RoutingConfig(strategy="power-of-two-choices", seed=seed)).route(
        job(), fleet, 0, 0
    )
    assert route.agent_id == min(fleet[:2], key=_load_key).agent_id


def test_power_of_two_choices_balances_better_than_random() -> None:
    """Classic result: the maximum load drops sharply with a second choice."""

    def max_load(strategy: str) -> int:
        fleet = fleet_of([1000] * 100)
        router = Router(RoutingConfig(strategy=strategy, seed=11))
        for number in range(2000):
            by_id(fleet, router.route(job(number), fleet, 0, 0).agent_id).in_flight += 1
        return max(agent.in_flight for agent in fleet)

    assert max_load("power-of-two-choices") < max_load("random") - 5


def test_random_spreads_picks_uniformly() -> None:
    fleet = fleet_of([10_000] * 4)
    router = Router(RoutingConfig(strategy="random", seed=5))
    counts = collections.Counter(router.route(job(n), fleet, 0, 0).agent_id for n in range(4000))
    assert all(800 < counts[agent.agent_id] < 1200 for agent in fleet)


def test_random_strategies_depend_on_the_seed() -> None:
    fleet = fleet_of([100] * 10)

    def picks(seed: int) -> list[str | None]:
        router = Router(RoutingConfig(strategy="random", seed=seed))
        return [router.route(job(n), fleet, 0, 0).agent_id for n in range(50)]

    assert picks(0) == picks(0)
    assert picks(0) != picks(1)


@st.composite
def performance_fleets(draw: st.DrawFn) -> list[AgentInfo]:
    size = draw(st.integers(2, 6))
    return [
        AgentInfo(
            f"a{i}",
            capacity=draw(st.integers(1, 4)),
            in_flight=draw(st.integers(0, 4)),
            ewma_run_ms=draw(st.none() | st.sampled_from((10.0, 50.0, 200.0))),
            ewma_success=draw(st.sampled_from((0.5, 0.9, 1.0))),
        )
        for i in range(size)
    ]


def _dominates(better: AgentInfo, worse: AgentInfo) -> bool:
    """Faster or as fast, as reliable or more, as much room or more, and better in one."""
    assert better.ewma_run_ms is not None and worse.ewma_run_ms is not None
    as_good = (
        better.ewma_run_ms <= worse.ewma_run_ms
        and better.ewma_success >= worse.ewma_success
        and better.free_slots >= worse.free_slots
    )
    strictly = (
        better.ewma_run_ms < worse.ewma_run_ms
        or better.ewma_success > worse.ewma_success
        or better.free_slots > worse.free_slots
    )
    return as_good and strictly


@given(fleet=performance_fleets())
def test_performance_never_picks_an_agent_another_free_agent_dominates(
    fleet: list[AgentInfo],
) -> None:
    route = Router(RoutingConfig(strategy="performance")).route(job(), fleet, 0, 0)
    if not free(fleet):
        assert route.outcome is RouteOutcome.BUSY
        return
    chosen = by_id(fleet, route.agent_id)
    known = [a for a in free(fleet) if a.ewma_run_ms is not None]
    if chosen.ewma_run_ms is not None:
        assert not any(_dominates(other, chosen) for other in known)


def test_performance_prefers_fast_reliable_agents_and_tries_new_ones() -> None:
    slow = AgentInfo("slow", 4, ewma_run_ms=400.0, ewma_success=1.0)
    flaky = AgentInfo("flaky", 4, ewma_run_ms=100.0, ewma_success=0.2)
    fast = AgentInfo("fast", 4, ewma_run_ms=100.0, ewma_success=0.95)
    router = Router(RoutingConfig(strategy="performance"))
    assert router.route(job(), [slow, flaky, fast], 0, 0).agent_id == "fast"
    newcomer = AgentInfo("new", 4)  # no history: assumed as fast as the fastest known
    assert router.route(job(), [slow, newcomer, fast], 1, 0).agent_id == "new"
    fast.in_flight = 3  # one free slot left: scaled down below the slow agent's four
    assert router.route(job(), [slow, flaky, fast], 2, 0).agent_id == "slow"


@st.composite
def packing_fleets(draw: st.DrawFn) -> list[AgentInfo]:
    """Agents with loads, costs and run times varied, some of them slower than the pace."""
    fleet = draw(fleets(min_size=1))
    for agent in fleet:
        agent.cost_per_task = draw(st.sampled_from((0.0, 0.5, 1.0, 2.0)))
        agent.ewma_run_ms = draw(st.sampled_from((None, 0.0, 10.0, 14.0, 15.0, 16.0, 40.0)))
    return fleet


def _packing_key(agent: AgentInfo, typical_ms: float | None) -> tuple[bool, Fraction, float, str]:
    """The documented order, restated: at pace first, then busiest, cheapest, smallest id."""
    run_ms = agent.ewma_run_ms
    slow = run_ms is not None and typical_ms is not None and run_ms > 1.5 * typical_ms
    return slow, -Fraction(agent.in_flight, agent.capacity), agent.cost_per_task, agent.agent_id


@given(fleet=packing_fleets(), task=jobs())
def test_packing_picks_the_busiest_free_agent_at_pace_then_the_cheapest(
    fleet: list[AgentInfo], task: Job
) -> None:
    route = Router(RoutingConfig(strategy="packing")).route(task, fleet, 0, 0)
    tiers = zone_tiers(task, fleet, strict=False)
    preferred = next((tier for tier in tiers if free(tier)), None)
    if preferred is None:
        assert route.agent_id is None
        return
    known = [a.ewma_run_ms for a in preferred if a.ewma_run_ms is not None]
    typical_ms = max(statistics.median(known), 1.0) if known else None
    best = min(free(preferred), key=lambda agent: _packing_key(agent, typical_ms))
    assert route.agent_id == best.agent_id


@given(
    capacity=st.integers(1, 6),
    loads=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    costs=st.tuples(st.sampled_from((0.0, 1.0, 3.0)), st.sampled_from((0.0, 1.0, 3.0))),
)
def test_packing_takes_the_agent_with_more_in_flight_or_the_cheaper_at_equal_load(
    capacity: int, loads: tuple[int, int], costs: tuple[float, float]
) -> None:
    """Two capable agents of one size, both with a free slot: the busier one, whatever it
    costs; at equal load the cheaper; at equal cost too, the smaller id."""
    fleet = [
        AgentInfo(name, capacity, in_flight=min(load, capacity - 1), cost_per_task=cost)
        for name, load, cost in zip(("a0", "a1"), loads, costs, strict=True)
    ]
    chosen = Router(RoutingConfig(strategy="packing")).route(job(), fleet, 0, 0).agent_id
    first, second = fleet
    if first.in_flight != second.in_flight:
        assert chosen == max(fleet, key=lambda agent: agent.in_flight).agent_id
    elif first.cost_per_task != second.cost_per_task:
        assert chosen == min(fleet, key=lambda agent: agent.cost_per_task).agent_id
    else:
        assert chosen == "a0"


def test_packing_fills_one_agent_before_opening_the_next_and_spares_slow_agents() -> None:
    fleet = [
        AgentInfo("cheap", 2, cost_per_task=1.0, ewma_run_ms=90.0),
        AgentInfo("dear", 2, cost_per_task=5.0),
        AgentInfo("slow", 2, in_flight=1, ewma_run_ms=400.0),  # half full, but too slow
        AgentInfo("fast", 2, ewma_run_ms=100.0, cost_per_task=9.0),
    ]
    router = Router(RoutingConfig(strategy="packing"))
    picks = []
    for number in range(6):
        route = router.route(job(number), fleet, 0, 0)
        picks.append(route.agent_id)
        by_id(fleet, route.agent_id).in_flight += 1
    # The cheapest idle agent opens first and is filled before the next one opens; the slow
    # agent, though the busiest, takes work only once every agent at pace is full.
    assert picks == ["cheap", "cheap", "dear", "dear", "fast", "fast"]
    assert router.route(job(7), fleet, 0, 0).agent_id == "slow"
