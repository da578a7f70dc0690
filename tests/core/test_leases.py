"""In-flight leases: each assigned task comes back exactly once, and loads follow the facts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streams.core.agents import AgentRegistry, HealthConfig, Heartbeat, Transition
from streams.core.leases import InFlight, Lease
from streams.core.model import AgentState, Job
from streams.errors import CoreError

CONFIG = HealthConfig(heartbeat_interval_ms=1_000, suspect_after_ms=3_000, down_after_ms=10_000)


def beat(agent_id: str, now_ms: int, status: str = "READY", capacity: int = 2) -> Heartbeat:
    return Heartbeat(agent_id, capacity, frozenset(), None, 1.0, 0.0, status, now_ms)


def setup(capacity: int = 2) -> tuple[AgentRegistry, InFlight]:
    registry = AgentRegistry(CONFIG)
    registry.heartbeat(beat("a", 0, capacity=capacity), 0)
    registry.heartbeat(beat("b", 0, capacity=capacity), 0)
    return registry, InFlight(registry)


def in_flight(registry: AgentRegistry, agent_id: str) -> int:
    info = registry.get(agent_id)
    assert info is not None
    return info.in_flight


# --- examples ------------------------------------------------------------------------------


def test_assign_records_the_lease_and_the_agents_load() -> None:
    registry, table = setup()
    lease = table.assign(Job("t1", 0, 0, attempt=1), "a", now_ms=100, lease_ms=5_000)
    assert (lease.task_id, lease.agent_id, lease.attempt, lease.epoch) == ("t1", "a", 1, 1)
    assert (lease.dispatched_ms, lease.expires_ms) == (100, 5_100)
    assert table.get("t1") == lease and "t1" in table and len(table) == 1
    assert table.of_agent("a") == [lease] and table.of_agent("b") == []
    assert in_flight(registry, "a") == 1
    assert (registry.total_slots, registry.free_slots) == (4, 3)
    assert table.next_expiry_ms() == 5_100


def test_assign_refuses_what_the_scheduler_must_never_do() -> None:
    registry, table = setup(capacity=1)
    table.assign(Job("t1", 0, 0), "a", 0, 1_000)
    with pytest.raises(CoreError, match="already in flight"):
        table.assign(Job("t1", 0, 0), "b", 0, 1_000)
    with pytest.raises(CoreError):
        table.assign(Job("t2", 0, 0), "a", 0, 1_000)  # full
    with pytest.raises(CoreError):
        table.assign(Job("t2", 0, 0), "nobody", 0, 1_000)
    with pytest.raises(CoreError):
        table.assign(Job("t2", 0, 0), "b", 0, 0)
    registry.heartbeat(beat("b", 10, "DRAINING", capacity=1), 10)
    with pytest.raises(CoreError):
        table.assign(Job("t2", 0, 0), "b", 10, 1_000)
    assert len(table) == 1


def test_a_stale_or_duplicate_result_changes_nothing() -> None:
    registry, table = setup()
    table.assign(Job("t1", 0, 0, attempt=2), "a", 0, 1_000)
    assert table.finish("t1", 1) is None
    assert table.finish("unknown", 0) is None
    assert len(table) == 1 and in_flight(registry, "a") == 1
    assert table.finish("t1", 2) is not None
    assert table.finish("t1", 2) is None
    assert in_flight(registry, "a") == 0


def test_lease_expiry_is_inclusive_and_returned_once() -> None:
    _, table = setup()
    table.assign(Job("t1", 0, 0), "a", 0, 1_000)
    table.assign(Job("t2", 0, 0), "b", 0, 2_000)
    assert table.expired(999) == []
    assert [lease.task_id for lease in table.expired(1_000)] == ["t1"]
    assert table.expired(1_500) == []
    assert table.next_expiry_ms() == 2_000


def test_renew_extends_but_never_shortens() -> None:
    _, table = setup()
    table.assign(Job("t1", 0, 0), "a", 0, 1_000)
    table.renew("t1", 500, 100)
    assert table.next_expiry_ms() == 1_000
    table.renew("t1", 900, 1_000)
    assert table.expired(1_000) == []
    assert table.next_expiry_ms() == 1_900
    table.renew("gone", 900, 1_000)
    with pytest.raises(CoreError):
        table.renew("t1", 900, 0)
    assert [lease.expires_ms for lease in table.expired(1_900)] == [1_900]


def test_an_agent_going_down_hands_its_leases_back_once() -> None:
    registry, table = setup()
    first = table.assign(Job("t1", 0, 0), "a", 0, 60_000)
    second = table.assign(Job("t2", 0, 0), "a", 0, 60_000)
    table.assign(Job("t3", 0, 0), "b", 0, 60_000)
    suspect = registry.tick(3_001)
    assert {t.after for t in suspect} == {AgentState.SUSPECT}
    assert table.hand_back(suspect) == [] and len(table) == 3
    registry.heartbeat(beat("b", 9_000), 9_000)
    transitions = registry.tick(10_001)
    assert [(t.agent_id, t.after) for t in transitions] == [("a", AgentState.DOWN)]
    assert table.hand_back(transitions) == [first, second]
    assert table.hand_back(transitions) == []
    assert table.lost_with("a") == []
    assert in_flight(registry, "a") == 0 and [lease.task_id for lease in table] == ["t3"]


def test_a_rejoined_agent_gets_leases_of_its_new_epoch() -> None:
    registry, table = setup()
    registry.leave("a", 10)
    registry.heartbeat(beat("a", 20), 20)
    assert table.assign(Job("t1", 0, 0), "a", 20, 1_000).epoch == 2


def test_restore_puts_back_a_lease_as_it_was() -> None:
    registry, table = setup(capacity=1)
    lease = Lease(Job("t1", 0, 0, attempt=3), "a", 3, 7, dispatched_ms=5, expires_ms=50)
    table.restore(lease)
    assert table.get("t1") == lease and in_flight(registry, "a") == 1
    with pytest.raises(CoreError):
        table.restore(lease)
    with pytest.raises(CoreError):
        table.restore(replace(lease, job=Job("t2", 0, 0), agent_id="nobody"))
    assert table.expired(50) == [lease]


def test_many_leases_expire_in_order_of_expiry() -> None:
    registry = AgentRegistry(CONFIG)
    registry.heartbeat(beat("a", 0, capacity=5_000), 0)
    table = InFlight(registry)
    for i in range(5_000):
        table.assign(Job(f"t{i}", 0, 0), "a", now_ms=i, lease_ms=10_000 - 2 * i)
    for i in range(0, 5_000, 2):
        assert table.finish(f"t{i}", 0) is not None
    got = table.expired(10_000)
    assert [lease.expires_ms for lease in got] == sorted(10_000 - i for i in range(1, 5_000, 2))
    assert len(table) == 0 and in_flight(registry, "a") == 0


def test_renewing_often_keeps_each_lease_once_in_the_expiry_order() -> None:
    _, table = setup()
    for task_id, agent_id in (("t1", "a"), ("t2", "a"), ("t3", "b")):
        table.assign(Job(task_id, 0, 0), agent_id, 0, 10)
    for now_ms in range(1, 400):
        for offset_ms, task_id in enumerate(("t1", "t2", "t3")):
            table.renew(task_id, now_ms, 10 + offset_ms)
    assert table.next_expiry_ms() == 409
    assert [(x.task_id, x.expires_ms) for x in table.expired(409)] == [("t1", 409)]
    assert [(x.task_id, x.expires_ms) for x in table.expired(10**6)] == [("t2", 410), ("t3", 411)]
    assert table.expired(10**6) == [] and table.next_expiry_ms() is None


@settings(max_examples=60)
@given(
    expiries=st.lists(st.integers(1_000, 1_100), min_size=1, max_size=12),
    churn=st.integers(0, 600),
    cut_ms=st.integers(999, 1_101),
)
def test_long_leases_expire_in_order_whatever_the_churn_of_short_ones(
    expiries: list[int], churn: int, cut_ms: int
) -> None:
    registry = AgentRegistry(CONFIG)
    registry.heartbeat(beat("a", 0, capacity=200), 0)
    table = InFlight(registry)
    for i, expires_ms in enumerate(expiries):
        table.assign(Job(f"long{i}", 0, 0), "a", 0, expires_ms)
    for i in range(churn):
        table.assign(Job(f"short{i}", 0, 0), "a", 0, 1 + i % 50)
        if i % 7:
            assert table.finish(f"short{i}", 0) is not None
    table.expired(999)
    assert table.next_expiry_ms() == min(expiries)
    got = [x.expires_ms for x in table.expired(cut_ms)]
    assert got == sorted(e for e in expiries if e <= cut_ms)
    assert [x.expires_ms for x in table.expired(10**6)] == sorted(e for e in expiries if e > cut_ms)


# --- leases against a model -----------------------------------------------------------------

AGENTS = st.sampled_from(["a0", "a1", "a2"])
STATUS = st.sampled_from(["READY", "READY", "READY", "DRAINING", "STOPPING"])


class LeaseMachine(RuleBasedStateMachine):
    """Random dispatches, results (some stale), expiries, renewals and agent failures."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = AgentRegistry(CONFIG)
        self.table = InFlight(self.registry)
        self.now_ms = 0
        self.next_task = 0
        self.held: dict[str, Lease] = {}
        """The model: task id -> the lease it holds."""
        self.returned: set[tuple[str, int]] = set()
        self.assigned = 0

    def _take_back(self, leases: list[Lease], expected: list[Lease] | None = None) -> None:
        """Leases come back once each, and only leases that were held."""
        for lease in leases:
            key = (lease.task_id, lease.attempt)
            assert key not in self.returned
            assert self.held.pop(lease.task_id) == lease
            self.returned.add(key)
        if expected is not None:
            assert sorted(leases, key=lambda x: x.task_id) == sorted(
                expected, key=lambda x: x.task_id
            )

    def _failover(self, transitions: list[Transition]) -> None:
        for transition in transitions:
            if transition.after is AgentState.DOWN:
                gone = [x for x in self.held.values() if x.agent_id == transition.agent_id]
                self._take_back(self.table.lost_with(transition.agent_id), gone)

    @rule(agent=AGENTS, status=STATUS, capacity=st.integers(0, 3), advance_ms=st.integers(0, 4_000))
    def heartbeat(self, agent: str, status: str, capacity: int, advance_ms: int) -> None:
        self.now_ms += advance_ms
        hb = Heartbeat(agent, capacity, frozenset(), None, 1.0, 0.0, status, self.now_ms)
        self._failover(self.registry.heartbeat(hb, self.now_ms))

    @rule(advance_ms=st.integers(0, 12_000))
    def tick(self, advance_ms: int) -> None:
        self.now_ms += advance_ms
        self._failover(self.registry.tick(self.now_ms))

    @rule(data=st.data(), lease_ms=st.integers(1, 8_000), retry=st.booleans())
    def assign(self, data: st.DataObject, lease_ms: int, retry: bool) -> None:
        open_agents = [a.agent_id for a in self.registry.ready() if a.free_slots > 0]
        lost = sorted({task for task, _ in self.returned} - set(self.held))
        if retry and lost:
            task_id = data.draw(st.sampled_from(lost))
            attempt = 1 + max(attempt for task, attempt in self.returned if task == task_id)
        else:
            task_id, attempt = f"t{self.next_task}", 0
            self.next_task += 1
        job = Job(task_id, 0, 0, attempt=attempt)
        if not open_agents:
            agent = data.draw(AGENTS)
            with pytest.raises(CoreError):
                self.table.assign(job, agent, self.now_ms, lease_ms)
            return
        agent = data.draw(st.sampled_from(open_agents))
        lease = self.table.assign(job, agent, self.now_ms, lease_ms)
        assert (lease.agent_id, lease.attempt, lease.expires_ms) == (
            agent,
            attempt,
            self.now_ms + lease_ms,
        )
        assert lease.epoch == self.registry.epoch(agent)
        self.held[task_id] = lease
        self.assigned += 1

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def assign_twice(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(sorted(self.held.values(), key=lambda x: x.task_id)))
        with pytest.raises(CoreError):
            self.table.assign(lease.job, lease.agent_id, self.now_ms, 1_000)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(sorted(self.held.values(), key=lambda x: x.task_id)))
        got = self.table.finish(lease.task_id, lease.attempt)
        assert got is not None
        self._take_back([got], [lease])

    @precondition(lambda self: bool(self.returned))
    @rule(data=st.data(), delta=st.sampled_from([-1, 0, 1]))
    def finish_stale(self, data: st.DataObject, delta: int) -> None:
        """A late, duplicate or future-attempt result of a task already handed back."""
        task_id, attempt = data.draw(st.sampled_from(sorted(self.returned)))
        current = self.held.get(task_id)
        if current is not None and current.attempt == attempt + delta:
            return
        before = len(self.table)
        assert self.table.finish(task_id, attempt + delta) is None
        assert len(self.table) == before

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), lease_ms=st.integers(1, 8_000))
    def renew(self, data: st.DataObject, lease_ms: int) -> None:
        lease = data.draw(st.sampled_from(sorted(self.held.values(), key=lambda x: x.task_id)))
        self.table.renew(lease.task_id, self.now_ms, lease_ms)
        expires_ms = max(lease.expires_ms, self.now_ms + lease_ms)
        self.held[lease.task_id] = replace(lease, expires_ms=expires_ms)

    @rule(advance_ms=st.integers(0, 6_000))
    def expire(self, advance_ms: int) -> None:
        self.now_ms += advance_ms
        due = [x for x in self.held.values() if x.expires_ms <= self.now_ms]
        got = self.table.expired(self.now_ms)
        assert [x.expires_ms for x in got] == sorted(x.expires_ms for x in got)
        self._take_back(got, due)

    @invariant()
    def table_matches_the_model(self) -> None:
        assert len(self.table) == len(self.held)
        for task_id, lease in self.held.items():
            assert self.table.get(task_id) == lease
        expiries = [lease.expires_ms for lease in self.held.values()]
        assert self.table.next_expiry_ms() == (min(expiries) if expiries else None)

    @invariant()
    def loads_equal_the_leases_held(self) -> None:
        for info in self.registry.agents:
            mine = [x for x in self.held.values() if x.agent_id == info.agent_id]
            assert info.in_flight == len(mine) == len(self.table.of_agent(info.agent_id))
            if info.state is AgentState.DOWN:
                assert mine == []

    @invariant()
    def slots_equal_a_recomputation(self) -> None:
        ready = self.registry.ready()
        assert self.registry.total_slots == sum(a.capacity for a in ready)
        assert self.registry.free_slots == sum(max(0, a.capacity - a.in_flight) for a in ready)

    def teardown(self) -> None:
        """Every assigned task was, or can still be, handed back: none lost, none twice."""
        for info in self.registry.agents:
            self._take_back(self.table.lost_with(info.agent_id))
        assert len(self.table) == 0 and not self.held
        assert len(self.returned) == self.assigned


LeaseMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50)
TestLeases = LeaseMachine.TestCase
