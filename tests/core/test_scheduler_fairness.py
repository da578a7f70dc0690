"""Sharing: weighted fair share between tenants, in-flight and rate quotas, reserved capacity."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streams.core.scheduling import Scheduler, SchedulerConfig
from streams.core.scheduling.fairness import MAX_TENANTS, FairShare
from streams.core.scheduling.priority import ESCALATED
from streams.core.scheduling.quotas import TokenBucket
from tests.core.test_scheduler_fakes import Fleet, agent, job


def _strict(**settings: Any) -> SchedulerConfig:
    """Strict priority, no escalation: only the sharing rules under test are in play."""
    return SchedulerConfig(aging_ms=None, escalation_ms=0, **settings)


def _backlog(scheduler: Scheduler, tenant: str, count: int, level: int = 0) -> None:
    for index in range(count):
        scheduler.offer(job(f"{tenant}{index}", level, tenant=tenant), 0)


def _one_at_a_time(scheduler: Scheduler, releases: int, now_ms: int = 0) -> list[str]:
    fleet = Fleet([agent("big", capacity=10**6)])
    tenants: list[str] = []
    for _ in range(releases):
        tenants += [item.job.tenant for item in scheduler.release(now_ms, fleet, limit=1)]
    return tenants


@given(
    weights=st.tuples(st.floats(0.1, 10.0), st.floats(0.1, 10.0)),
    releases=st.integers(1, 300),
)
def test_two_backlogged_tenants_share_releases_by_weight_within_one(
    weights: tuple[float, float], releases: int
) -> None:
    """Stride scheduling bound: after n releases, tenant a has n*wa/(wa+wb) of them, +-1."""
    config = _strict(tenant_weights={"a": weights[0], "b": weights[1]})
    scheduler = Scheduler(config)
    _backlog(scheduler, "a", releases)
    _backlog(scheduler, "b", releases)
    share_a = weights[0] / sum(weights)
    served_a = 0
    for count, tenant in enumerate(_one_at_a_time(scheduler, releases), start=1):
        served_a += tenant == "a"
        assert abs(served_a - count * share_a) <= 1 + 1e-9


def test_weights_one_to_three_give_one_release_in_four() -> None:
    config = _strict(tenant_weights={"light": 1.0, "heavy": 3.0})
    scheduler = Scheduler(config)
    _backlog(scheduler, "light", 1_000)
    _backlog(scheduler, "heavy", 1_000)
    tenants = _one_at_a_time(scheduler, 1_000)
    assert tenants.count("light") in (249, 250, 251)


@given(idle_releases=st.integers(1, 200), weight_b=st.floats(0.2, 5.0))
def test_a_tenant_back_from_idle_gets_its_share_not_a_burst(
    idle_releases: int, weight_b: float
) -> None:
    """Time spent idle is not credited: from its return, b gets its weighted share, +-1."""
    config = _strict(tenant_weights={"b": weight_b})
    scheduler = Scheduler(config)
    _backlog(scheduler, "a", 400)
    _one_at_a_time(scheduler, idle_releases)
    _backlog(scheduler, "b", 200)
    share_b = weight_b / (1.0 + weight_b)
    served_b = 0
    for count, tenant in enumerate(_one_at_a_time(scheduler, 150), start=1):
        served_b += tenant == "b"
        assert abs(served_b - count * share_b) <= 1 + 1e-9


run_steps = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.sampled_from("abc"), st.integers(1, 5)),
        st.tuples(st.just("release"), st.integers(1, 6), st.none()),
        st.tuples(st.just("finish"), st.integers(0, 20), st.none()),
        st.tuples(st.just("tick"), st.integers(1, 700), st.none()),
    ),
    max_size=60,
)


@given(limits=st.dictionaries(st.sampled_from("abc"), st.integers(1, 3)), steps=run_steps)
def test_a_tenant_never_has_more_than_its_max_in_flight(
    limits: dict[str, int], steps: list[tuple[str, object, object]]
) -> None:
    scheduler = Scheduler(_strict(tenant_max_in_flight=limits))
    fleet = Fleet([agent("a0", capacity=4), agent("a1", capacity=4)])
    running: list[tuple[str, str, str]] = []  # (task id, tenant, agent)
    now_ms, serial = 0, 0
    for action, first, second in steps:
        if action == "offer":
            assert isinstance(first, str) and isinstance(second, int)
            for _ in range(second):
                serial += 1
                scheduler.offer(job(f"t{serial}", tenant=first), now_ms)
        elif action == "release":
            for item in scheduler.release(now_ms, fleet, limit=int(str(first))):
                running.append((item.job.task_id, item.job.tenant, item.agent_id))
        elif action == "finish" and running:
            task_id, tenant, agent_id = running.pop(int(str(first)) % len(running))
            fleet.finish(agent_id)
            scheduler.task_finished(job(task_id, tenant=tenant))
        elif action == "tick":
            now_ms += int(str(first))
        for tenant, limit in limits.items():
            in_flight = sum(1 for _, owner, _ in running if owner == tenant)
            assert in_flight <= limit
            assert scheduler.in_flight(tenant) == in_flight


def test_the_in_flight_limit_frees_a_slot_when_a_task_finishes() -> None:
    scheduler = Scheduler(_strict(tenant_max_in_flight={"a": 2}))
    fleet = Fleet([agent("big", capacity=10)])
    _backlog(scheduler, "a", 5)
    first = scheduler.release(0, fleet)
    assert len(first) == 2
    scheduler.task_finished(first[0].job)
    scheduler.task_finished(first[0].job)  # a repeated report changes nothing
    assert len(scheduler.release(0, fleet)) == 1
    assert scheduler.release(0, fleet) == []


@given(
    rate_per_s=st.floats(0.5, 200.0),
    burst=st.one_of(st.none(), st.floats(1.0, 20.0)),
    gaps_ms=st.lists(st.integers(0, 400), min_size=1, max_size=60),
)
def test_releases_respect_the_token_bucket_over_every_window(
    rate_per_s: float, burst: float | None, gaps_ms: list[int]
) -> None:
    bursts = {} if burst is None else {"a": burst}
    config = _strict(tenant_max_rate_per_s={"a": rate_per_s}, tenant_burst=bursts)
    scheduler = Scheduler(config)
    _backlog(scheduler, "a", 2_000)
    _backlog(scheduler, "free", 50)
    fleet = Fleet([agent("big", capacity=10**6)])
    times_ms: list[int] = []
    now_ms = 0
    for gap_ms in gaps_ms:
        now_ms += gap_ms
        released = scheduler.release(now_ms, fleet)
        times_ms += [now_ms for item in released if item.job.tenant == "a"]
    bucket = config.burst_of("a")
    for first, start_ms in enumerate(times_ms):
        for last in range(first, len(times_ms)):
            allowed = bucket + rate_per_s * (times_ms[last] - start_ms) / 1000
            assert last - first + 1 <= allowed + 1e-6


@given(rate_per_s=st.floats(1.0, 100.0), duration_ms=st.integers(100, 3_000))
def test_a_backlogged_rate_limited_tenant_gets_its_full_rate(
    rate_per_s: float, duration_ms: int
) -> None:
    scheduler = Scheduler(_strict(tenant_max_rate_per_s={"a": rate_per_s}))
    _backlog(scheduler, "a", 1_000)
    fleet = Fleet([agent("big", capacity=10**6)])
    released = 0
    now_ms: int | None = 0
    while now_ms is not None and now_ms <= duration_ms:
        released += len(scheduler.release(now_ms, fleet))
        now_ms = scheduler.next_wakeup_ms(now_ms + 1)
    expected = max(1.0, rate_per_s) + rate_per_s * duration_ms / 1000
    assert expected - 1 <= released <= expected + 1e-6


@given(rate_per_s=st.floats(0.01, 1_000.0), spent=st.integers(1, 30), since_ms=st.integers(0, 99))
def test_the_bucket_has_a_token_exactly_at_next_token_ms(
    rate_per_s: float, spent: int, since_ms: int
) -> None:
    bucket = TokenBucket(rate_per_s, burst=max(1.0, rate_per_s))
    for _ in range(spent):
        if bucket.available(0):
            bucket.take(0)
    at_ms = bucket.next_token_ms(since_ms)
    if at_ms is None:
        assert bucket.available(since_ms)
    else:
        assert not bucket.available(at_ms - 1)
        assert bucket.available(at_ms)


@given(
    capacity=st.integers(1, 12),
    share=st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]),
    urgent=st.integers(0, 12),
    lower=st.integers(0, 12),
)
def test_lower_levels_never_take_the_reserved_slots(
    capacity: int, share: float, urgent: int, lower: int
) -> None:
    reserved = round(share * capacity)
    scheduler = Scheduler(_strict(reserved_top_share=share))
    _backlog(scheduler, "low", lower, level=2)
    fleet = Fleet([agent("only", capacity=capacity)])
    lower_started = len(scheduler.release(0, fleet))
    assert lower_started == min(lower, max(0, capacity - reserved))
    _backlog(scheduler, "top", urgent, level=0)
    assert len(scheduler.release(0, fleet)) == min(urgent, capacity - lower_started)


class _Unpruned:
    """FairShare's arithmetic without pruning: the reference the pruned tables must match."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights
        self.finish: dict[str, float] = {}
        self.floor = 0.0

    def tag(self, tenant: str) -> float:
        return max(self.finish.get(tenant, 0.0), self.floor)

    def charge(self, tenant: str) -> None:
        start = self.tag(tenant)
        self.finish[tenant] = start + 1.0 / self.weights.get(tenant, 1.0)
        self.floor = start


@given(
    st.lists(st.integers(0, 300), min_size=300, max_size=2_000),  # past PRUNE_FROM tenants
    st.dictionaries(st.integers(0, 300).map(str), st.floats(0.1, 10), max_size=20),
)
def test_pruned_tenant_tables_serve_as_the_unpruned_ones(
    charges: list[int], weights: dict[str, float]
) -> None:
    pruned, reference = FairShare(weights, levels=2), _Unpruned(weights)
    eff = ESCALATED
    for tenant in map(str, charges):
        assert pruned.tag(eff, tenant) == reference.tag(tenant)
        pruned.charge(eff, tenant)
        reference.charge(tenant)
    assert all(pruned.tag(eff, t) == reference.tag(t) for t in reference.finish)


def test_a_stream_of_new_tenant_names_keeps_the_table_bounded() -> None:
    share = FairShare({}, levels=2)
    for number in range(100_000):
        share.charge(ESCALATED, f"tenant-{number}")  # each served once, never again
    assert share.tenants(ESCALATED) <= MAX_TENANTS
