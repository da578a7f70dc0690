"""Agent health: the transition table, the registry against an independent model, slots."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streams.core.agents import (
    HEARTBEAT_EVENTS,
    TRANSITIONS,
    AgentRegistry,
    HealthConfig,
    HealthEvent,
    Heartbeat,
    Transition,
)
from streams.core.model import AgentState
from streams.errors import ConfigError, CoreError

S = AgentState
CONFIG = HealthConfig(heartbeat_interval_ms=1_000, suspect_after_ms=3_000, down_after_ms=10_000)


Move = tuple[S | None, S]
T = TypeVar("T")


def beat(
    agent_id: str,
    sent_ms: int,
    status: str = "READY",
    capacity: int = 4,
    *,
    skills: frozenset[str] = frozenset(),
    zone: str | None = None,
    weight: float = 1.0,
    cost_per_task: float = 0.0,
) -> Heartbeat:
    return Heartbeat(agent_id, capacity, skills, zone, weight, cost_per_task, status, sent_ms)


def moves(transitions: list[Transition]) -> list[Move]:
    return [(t.before, t.after) for t in transitions]


# --- the table ---------------------------------------------------------------------------


def test_table_is_total_over_known_states_and_registers_only_on_heartbeats() -> None:
    for state in AgentState:
        for event in HealthEvent:
            assert (state, event) in TRANSITIONS
    assert {event for (state, event) in TRANSITIONS if state is None} == set(
        HEARTBEAT_EVENTS.values()
    )


def test_only_a_heartbeat_leaves_down_and_only_through_joining() -> None:
    for (state, event), after in TRANSITIONS.items():
        if state is S.DOWN and after is not S.DOWN:
            assert after is S.JOINING
            assert event in HEARTBEAT_EVENTS.values()


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # steps: (kind, agent, time, status) ; expected: moves of the last step
        ([("hb", 0, "READY")], [(None, S.JOINING), (S.JOINING, S.READY)]),
        ([("hb", 0, "DRAINING")], [(None, S.JOINING), (S.JOINING, S.DRAINING)]),
        ([("hb", 0, "STOPPING")], [(None, S.DOWN)]),
        ([("hb", 0, "READY"), ("hb", 500, "READY")], []),
        ([("hb", 0, "READY"), ("hb", 500, "DRAINING")], [(S.READY, S.DRAINING)]),
        ([("hb", 0, "DRAINING"), ("hb", 500, "READY")], [(S.DRAINING, S.READY)]),
        ([("hb", 0, "READY"), ("tick", 3_000, "")], []),
        ([("hb", 0, "READY"), ("tick", 3_001, "")], [(S.READY, S.SUSPECT)]),
        ([("hb", 0, "DRAINING"), ("tick", 3_001, "")], [(S.DRAINING, S.SUSPECT)]),
        ([("hb", 0, "READY"), ("tick", 10_000, "")], [(S.READY, S.SUSPECT)]),
        ([("hb", 0, "READY"), ("tick", 10_001, "")], [(S.READY, S.DOWN)]),
        ([("hb", 0, "READY"), ("tick", 3_001, ""), ("tick", 10_000, "")], []),
        ([("hb", 0, "READY"), ("tick", 3_001, ""), ("tick", 10_001, "")], [(S.SUSPECT, S.DOWN)]),
        ([("hb", 0, "READY"), ("tick", 4_000, ""), ("hb", 4_000, "READY")], [(S.SUSPECT, S.READY)]),
        ([("hb", 0, "READY"), ("hb", 1_000, "STOPPING")], [(S.READY, S.DOWN)]),
        ([("hb", 0, "READY"), ("leave", 1_000, "")], [(S.READY, S.DOWN)]),
        ([("hb", 0, "READY"), ("leave", 1_000, ""), ("leave", 2_000, "")], []),
        (
            [("hb", 0, "READY"), ("tick", 20_000, ""), ("hb", 21_000, "READY")],
            [(S.DOWN, S.JOINING), (S.JOINING, S.READY)],
        ),
        ([("hb", 0, "READY"), ("leave", 1_000, ""), ("hb", 2_000, "STOPPING")], []),
    ],
)
def test_table_examples(steps: list[tuple[str, int, str]], expected: list[Move]) -> None:
    registry = AgentRegistry(CONFIG)
    last: list[Transition] = []
    for kind, at_ms, status in steps:
        if kind == "hb":
            last = registry.heartbeat(beat("a", at_ms, status), at_ms)
        elif kind == "tick":
            last = registry.tick(at_ms)
        else:
            last = registry.leave("a", at_ms)
    assert moves(last) == expected


def test_rejoin_after_down_starts_a_new_epoch_but_suspect_keeps_it() -> None:
    registry = AgentRegistry(CONFIG)
    first = registry.heartbeat(beat("a", 0), 0)
    assert [t.epoch for t in first] == [1, 1]
    registry.tick(5_000)
    registry.heartbeat(beat("a", 5_000), 5_000)
    assert registry.epoch("a") == 1
    down = registry.tick(20_000)
    assert moves(down) == [(S.READY, S.DOWN)] and down[0].epoch == 1
    again = registry.heartbeat(beat("a", 21_000), 21_000)
    assert [t.epoch for t in again] == [2, 2]
    assert registry.epoch("a") == 2


def test_a_heartbeat_older_than_the_last_one_is_ignored() -> None:
    registry = AgentRegistry(CONFIG)
    registry.heartbeat(beat("a", 1_000), 1_000)
    registry.leave("a", 2_000)
    version = registry.membership_version
    assert registry.heartbeat(beat("a", 999, capacity=9), 2_500) == []
    info = registry.get("a")
    assert info is not None and info.state is S.DOWN and info.capacity == 4
    assert registry.membership_version == version


def test_unknown_agents() -> None:
    registry = AgentRegistry(CONFIG)
    assert registry.get("x") is None
    assert registry.leave("x", 0) == []
    assert registry.next_wakeup_ms(0) is None
    with pytest.raises(CoreError):
        registry.epoch("x")
    with pytest.raises(CoreError):
        registry.record_result("x", 10, True)


def test_heartbeat_validates_its_fields() -> None:
    with pytest.raises(CoreError):
        beat("a", 0, status="SLEEPING")
    with pytest.raises(CoreError):
        beat("a", 0, capacity=-1)
    with pytest.raises(CoreError):
        beat("a", 0, weight=-0.5)
    with pytest.raises(CoreError):
        Heartbeat("a", 1, frozenset(), None, 1.0, -1.0, "READY", 0)


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"heartbeat_interval_ms": 0},
        {"heartbeat_interval_ms": -5},
        {"suspect_after_ms": -1},
        {"suspect_after_ms": 1_000},
        {"down_after_ms": 3_000},
        {"down_after_ms": 2_000},
        {"down_after_ms": -10_000},
        {"ewma_alpha": 0.0},
        {"ewma_alpha": 1.5},
    ],
)
def test_bad_health_config_raises_config_error(fields: dict[str, int | float]) -> None:
    values = {**dataclasses.asdict(HealthConfig()), **fields}
    with pytest.raises(ConfigError):
        HealthConfig(**values)


@given(
    interval=st.integers(-10, 50),
    suspect=st.integers(-10, 50),
    down=st.integers(-10, 50),
    alpha=st.floats(-1, 2, allow_nan=False),
)
def test_health_config_accepts_exactly_ordered_positive_timeouts(
    interval: int, suspect: int, down: int, alpha: float
) -> None:
    valid = 0 < interval < suspect < down and 0 < alpha <= 1
    if valid:
        HealthConfig(interval, suspect, down, alpha)
    else:
        with pytest.raises(ConfigError):
            HealthConfig(interval, suspect, down, alpha)


# --- performance figures -----------------------------------------------------------------


def test_record_result_keeps_an_ewma_of_run_time_and_success() -> None:
    registry = AgentRegistry(HealthConfig(ewma_alpha=0.5))
    registry.heartbeat(beat("a", 0), 0)
    version = registry.membership_version
    registry.record_result("a", 100, True)
    registry.record_result("a", 200, False)
    info = registry.get("a")
    assert info is not None
    assert info.ewma_run_ms == 150.0
    assert info.ewma_success == 0.5
    assert registry.membership_version == version
    with pytest.raises(CoreError):
        registry.record_result("a", -1, True)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), min_size=1, max_size=40))
def test_ewma_stays_within_the_observed_range(results: list[tuple[int, bool]]) -> None:
    registry = AgentRegistry(CONFIG)
    registry.heartbeat(beat("a", 0), 0)
    for run_ms, success in results:
        registry.record_result("a", run_ms, success)
    info = registry.get("a")
    assert info is not None and info.ewma_run_ms is not None
    runs = [run_ms for run_ms, _ in results]
    assert min(runs) - 1e-6 <= info.ewma_run_ms <= max(runs) + 1e-6
    assert 0.0 <= info.ewma_success <= 1.0
    if all(success for _, success in results):
        assert info.ewma_success == 1.0


# --- the registry against an independent model ----------------------------------------------


class Model:
    """Health by plain rules, written independently of the table."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self.state: dict[str, S] = {}
        self.seen_ms: dict[str, int] = {}
        self.sent_ms: dict[str, int] = {}
        self.epoch: dict[str, int] = {}
        self.order: list[str] = []
        self.last_beat_ms = 0
        """The last READY or DRAINING heartbeat from any agent."""
        self.counted_from_ms = 0
        """Silence before this does not count: the fleet was heard again after its silence."""
        self.fleet_held = False

    def heartbeat(self, agent: str, status: str, sent_ms: int, now_ms: int) -> list[Move]:
        if status != "STOPPING":
            if self.fleet_held:  # the fleet is heard again: silence counts from now
                self.fleet_held = False
                self.counted_from_ms = now_ms
            self.last_beat_ms = max(self.last_beat_ms, now_ms)
        if agent in self.state and sent_ms < self.sent_ms[agent]:
            return []
        if agent not in self.state:
            self.order.append(agent)
            self.epoch[agent] = 0
        self.seen_ms[agent], self.sent_ms[agent] = now_ms, sent_ms
        before = self.state.get(agent)
        path: list[Move] = []
        if status == "STOPPING":
            target = S.DOWN
        else:
            target = S.READY if status == "READY" else S.DRAINING
            if before in (None, S.DOWN):
                self.epoch[agent] += 1
                path.append((before, S.JOINING))
                before = S.JOINING
        if before is not target:
            path.append((before, target))
        self.state[agent] = target
        return path

    def tick(self, now_ms: int) -> dict[str, Move]:
        """Silence up to ``now_ms``; with two or more live agents all silent past
        ``suspect_after_ms``, none goes DOWN (SUSPECT at most) until one is heard again."""
        moved: dict[str, Move] = {}
        live = sum(1 for state in self.state.values() if state is not S.DOWN)
        quiet_ms = now_ms - max(self.last_beat_ms, self.counted_from_ms)
        fleet_silent = live >= 2 and quiet_ms > self.config.suspect_after_ms
        for agent, state in self.state.items():
            silent_ms = now_ms - max(self.seen_ms[agent], self.counted_from_ms)
            if state is S.DOWN:
                continue
            if silent_ms > self.config.down_after_ms and not fleet_silent:
                moved[agent] = (state, S.DOWN)
            elif silent_ms > self.config.down_after_ms:
                self.fleet_held = True
                if state is not S.SUSPECT:
                    moved[agent] = (state, S.SUSPECT)
            elif silent_ms > self.config.suspect_after_ms and state is not S.SUSPECT:
                moved[agent] = (state, S.SUSPECT)
        for agent, (_, after) in moved.items():
            self.state[agent] = after
        return moved

    def leave(self, agent: str) -> list[Move]:
        before = self.state.get(agent)
        if before is None or before is S.DOWN:
            return []
        self.state[agent] = S.DOWN
        return [(before, S.DOWN)]


AGENTS = st.sampled_from(["a0", "a1", "a2", "a3"])
STATUS = st.sampled_from(["READY", "READY", "READY", "DRAINING", "STOPPING"])
Offer = tuple[int, frozenset[str], str | None, float, float]
BASE_OFFER: Offer = (4, frozenset(), None, 1.0, 0.0)
# Offers differing from the base in one field each, so that repeats (no change) are common.
OFFERS = st.sampled_from(
    [
        BASE_OFFER,
        (2, frozenset(), None, 1.0, 0.0),
        (0, frozenset(), None, 1.0, 0.0),
        (4, frozenset({"gpu"}), None, 1.0, 0.0),
        (4, frozenset(), "eu", 1.0, 0.0),
        (4, frozenset(), None, 2.0, 0.0),
        (4, frozenset(), None, 1.0, 0.5),
    ]
)
Snapshot = tuple[tuple[str, S, int, frozenset[str], str | None, float, float], ...]


def snapshot(registry: AgentRegistry) -> Snapshot:
    """Everything a router caches per membership_version."""
    return tuple(
        (a.agent_id, a.state, a.capacity, a.skills, a.zone, a.weight, a.cost_per_task)
        for a in registry.agents
    )


class RegistryMachine(RuleBasedStateMachine):
    """Random heartbeats (some stale), silences, leaves and loads, checked at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = AgentRegistry(CONFIG)
        self.model = Model(CONFIG)
        self.now_ms = 0

    def _observe(self, action: Callable[[], T]) -> T:
        """Run an action; membership_version must change exactly when the snapshot does."""
        before, version = snapshot(self.registry), self.registry.membership_version
        result = action()
        changed = snapshot(self.registry) != before
        assert (self.registry.membership_version != version) == changed
        assert self.registry.membership_version >= version
        return result

    @rule(
        agent=AGENTS,
        status=STATUS,
        offer=OFFERS,
        lag_ms=st.sampled_from([0, 0, 0, 2_500, 12_000]),
        advance_ms=st.integers(0, 4_000),
    )
    def heartbeat(
        self, agent: str, status: str, offer: Offer, lag_ms: int, advance_ms: int
    ) -> None:
        self.now_ms += advance_ms
        sent_ms = self.now_ms - lag_ms
        capacity, skills, zone, weight, cost = offer
        hb = Heartbeat(agent, capacity, skills, zone, weight, cost, status, sent_ms)
        stale = agent in self.model.state and sent_ms < self.model.sent_ms[agent]
        got = self._observe(lambda: self.registry.heartbeat(hb, self.now_ms))
        assert moves(got) == self.model.heartbeat(agent, status, sent_ms, self.now_ms)
        for transition in got:
            assert transition.epoch == self.model.epoch[agent]
            assert transition.at_ms == self.now_ms
        info = self.registry.get(agent)
        assert info is not None
        if not stale:
            assert (info.capacity, info.skills, info.zone, info.weight, info.cost_per_task) == offer

    @rule(advance_ms=st.integers(0, 12_000))
    def tick(self, advance_ms: int) -> None:
        self.now_ms += advance_ms
        got = self._observe(lambda: self.registry.tick(self.now_ms))
        assert {t.agent_id: (t.before, t.after) for t in got} == self.model.tick(self.now_ms)
        assert len(got) == len({t.agent_id for t in got})
        for agent in self.model.order:
            info = self.registry.get(agent)
            assert info is not None
            assert info.state is self.model.state[agent]
        if not self.model.fleet_held:  # else the whole fleet's silence holds DOWN back
            for agent in self.model.order:
                silent_ms = self.now_ms - max(self.model.seen_ms[agent], self.model.counted_from_ms)
                if silent_ms > CONFIG.down_after_ms:
                    assert self.model.state[agent] is S.DOWN

    @rule(agent=AGENTS, advance_ms=st.integers(0, 2_000))
    def leave(self, agent: str, advance_ms: int) -> None:
        self.now_ms += advance_ms
        got = self._observe(lambda: self.registry.leave(agent, self.now_ms))
        assert moves(got) == self.model.leave(agent)

    @precondition(lambda self: bool(self.model.order))
    @rule(data=st.data())
    def set_in_flight(self, data: st.DataObject) -> None:
        agent = data.draw(st.sampled_from(self.model.order))
        count = data.draw(st.integers(0, 6))
        self._observe(lambda: self.registry.set_in_flight(agent, count))
        info = self.registry.get(agent)
        assert info is not None and info.in_flight == count

    @rule()
    def wake_up(self) -> None:
        """next_wakeup_ms is exactly the first time tick() changes something."""
        wakeup_ms = self.registry.next_wakeup_ms(self.now_ms)
        alive = any(state is not S.DOWN for state in self.model.state.values())
        held = self.model.fleet_held  # the fleet's silence: nothing moves until it is heard
        assert (wakeup_ms is not None) == alive or held
        if wakeup_ms is None:
            return
        assert wakeup_ms >= self.now_ms
        if wakeup_ms > self.now_ms:
            before = snapshot(self.registry)
            self.tick(wakeup_ms - 1 - self.now_ms)
            assert snapshot(self.registry) == before
            assert self.registry.next_wakeup_ms(self.now_ms) == wakeup_ms
        before = snapshot(self.registry)
        self.tick(wakeup_ms - self.now_ms)
        assert snapshot(self.registry) != before or self.model.fleet_held

    @invariant()
    def states_match_the_model(self) -> None:
        assert [a.agent_id for a in self.registry.agents] == self.model.order
        for agent in self.model.order:
            info = self.registry.get(agent)
            assert info is not None and info.state is self.model.state[agent]
            assert self.registry.epoch(agent) == self.model.epoch[agent]

    @invariant()
    def only_ready_agents_are_ready(self) -> None:
        ready = [a for a in self.model.order if self.model.state[a] is S.READY]
        assert [a.agent_id for a in self.registry.ready()] == ready

    @invariant()
    def slots_equal_a_recomputation(self) -> None:
        ready = [a for a in self.registry.agents if self.model.state[a.agent_id] is S.READY]
        assert self.registry.total_slots == sum(a.capacity for a in ready)
        assert self.registry.free_slots == sum(max(0, a.capacity - a.in_flight) for a in ready)


RegistryMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
TestRegistry = RegistryMachine.TestCase
