"""Pure bookkeeping of the worker: in-order commits, repeated attempts, who holds a partition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.adapters.offsets import OffsetTracker
from streams.adapters.worker.registry_view import RegistryView, beats, holds, home_partition
from streams.core.window import LruMap
from streams.wire import AgentRegistration, RegistrationStatus

NOW_MS = 1_790_000_000_000
TTL_MS = 30_000


def test_a_commit_never_passes_an_unfinished_offset() -> None:
    tracker = OffsetTracker(10)
    for offset in (10, 11, 12):
        tracker.take(offset)
    assert tracker.to_commit() is None  # nothing finished: 10 is where reading resumes
    tracker.finish(11)
    tracker.finish(12)
    assert tracker.committable() == 10 and tracker.to_commit() is None
    tracker.finish(10)
    assert tracker.to_commit() == 13
    assert tracker.to_commit() is None  # already committed
    assert tracker.unfinished == 0


@given(st.permutations(range(20)), st.integers(0, 20))
def test_committable_is_the_lowest_unfinished_offset(order: list[int], finished: int) -> None:
    tracker = OffsetTracker(100)
    for offset in range(100, 120):
        tracker.take(offset)
    done = {100 + offset for offset in order[:finished]}
    for offset in done:
        tracker.finish(offset)
    expected = min(set(range(100, 120)) - done, default=120)
    assert tracker.committable() == expected
    assert tracker.unfinished == 20 - finished


def test_the_bounded_map_forgets_the_least_recently_used_past_its_size() -> None:
    seen: LruMap[tuple[str, int], None] = LruMap(2)
    assert seen.put(("a", 0), None) is None
    assert ("a", 0) in seen
    assert seen.put(("a", 1), None) is None  # a retry is another attempt
    assert seen.get(("a", 0)) is None and ("a", 0) in seen  # get makes it the most recent
    assert seen.put(("b", 0), None) == (("a", 1), None)  # evicts the least recently used
    assert ("a", 0) in seen and ("a", 1) not in seen and len(seen) == 2


def _claim(
    agent_id: str,
    partition: int,
    epoch: int = 1,
    status: RegistrationStatus = RegistrationStatus.ACTIVE,
    age_ms: int = 0,
) -> AgentRegistration:
    return AgentRegistration(
        agent_id=agent_id,
        partition=partition,
        epoch=epoch,
        start_offset=0,
        status=status,
        registered_at=NOW_MS - age_ms,
        renewed_at=NOW_MS - age_ms,
        capacity=1,
    )


def _view(*records: AgentRegistration) -> RegistryView:
    view = RegistryView()
    for record in records:
        view.apply(record)
    return view


def _choose(view: RegistryView, agent_id: str, partitions: int = 4) -> int | None:
    return view.choose(agent_id, partitions=partitions, now_ms=NOW_MS, ttl_ms=TTL_MS)


def test_an_empty_registry_gives_partition_0_at_epoch_1() -> None:
    view = _view()
    assert (_choose(view, "a"), view.next_epoch(0)) == (0, 1)


def test_the_lowest_partition_nobody_holds_is_chosen() -> None:
    view = _view(_claim("x", 0), _claim("y", 2), _claim("z", 1, age_ms=TTL_MS))
    assert _choose(view, "a") == 1  # z's claim expired
    assert view.next_epoch(1) == 2


@given(
    held=st.sets(st.integers(0, 7), max_size=8),
    agent_id=st.text(min_size=1, max_size=8),
)
def test_after_a_lost_race_the_first_free_partition_from_home_is_chosen(
    held: set[int], agent_id: str
) -> None:
    view = _view(*(_claim(f"x{p}-{agent_id}", p) for p in held))
    home = home_partition(agent_id, 8)
    free = [p for p in [*range(home, 8), *range(home)] if p not in held]
    chosen = view.choose(agent_id, partitions=8, now_ms=NOW_MS, ttl_ms=TTL_MS, spread=True)
    assert chosen == (free[0] if free else None)


def test_agents_that_lost_a_race_mostly_aim_at_different_partitions() -> None:
    assert len({home_partition(f"agent-{i}", 64) for i in range(8)}) >= 6


def test_an_agent_reclaims_its_own_partition_active_or_released() -> None:
    assert _choose(_view(_claim("x", 0), _claim("a", 3)), "a") == 3
    released = _claim("a", 2, epoch=5, status=RegistrationStatus.RELEASED)
    view = _view(released)
    assert (_choose(view, "a"), view.next_epoch(2)) == (2, 6)
    assert _choose(view, "b") == 0


def test_an_agent_does_not_reclaim_a_partition_another_now_holds() -> None:
    view = _view(_claim("a", 0, status=RegistrationStatus.RELEASED), _claim("b", 0, epoch=2))
    assert _choose(view, "a") == 1


def test_the_epoch_is_above_every_epoch_ever_recorded_for_the_partition() -> None:
    view = _view(_claim("a", 0, epoch=7), _claim("a", 1, epoch=1))  # a moved on from 0
    assert view.next_epoch(0) == 8
    assert _choose(view, "b") == 0


def test_all_partitions_held_gives_none() -> None:
    assert _choose(_view(_claim("x", 0), _claim("y", 1)), "a", partitions=2) is None


def test_a_rival_claim_recorded_first_beats_an_equal_or_lower_epoch_only() -> None:
    own = _claim("a", 0, epoch=2)
    assert beats(_claim("b", 0, epoch=2), own)
    assert beats(_claim("b", 0, epoch=3), own)
    assert not beats(_claim("b", 0, epoch=1), own)
    assert not beats(_claim("b", 1, epoch=2), own)
    assert not beats(_claim("a", 0, epoch=2), own)
    assert not beats(_claim("b", 0, epoch=2, status=RegistrationStatus.RELEASED), own)


def test_holding_needs_active_and_renewed_within_the_ttl() -> None:
    assert holds(_claim("a", 0, age_ms=TTL_MS - 1), now_ms=NOW_MS, ttl_ms=TTL_MS)
    assert not holds(_claim("a", 0, age_ms=TTL_MS), now_ms=NOW_MS, ttl_ms=TTL_MS)
    released = _claim("a", 0, status=RegistrationStatus.RELEASED)
    assert not holds(released, now_ms=NOW_MS, ttl_ms=TTL_MS)
