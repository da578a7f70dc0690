"""Giving up on tasks: past their last start time (EXPIRED) or with no capable agent for too
long (NO_CAPABLE_AGENT); each reported once by ``expire``, none ever released."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.model import DeadLetterReason
from streams.core.scheduling import OfferResult, Scheduler, SchedulerConfig
from tests.core.test_scheduler_fakes import Fleet, agent, job

EXPIRED = DeadLetterReason.EXPIRED
NO_CAPABLE = DeadLetterReason.NO_CAPABLE_AGENT


def _scheduler(timeout_ms: int | None = 100) -> Scheduler:
    return Scheduler(
        SchedulerConfig(aging_ms=None, escalation_ms=0, no_capable_agent_timeout_ms=timeout_ms)
    )


@given(last_start_ms=st.integers(0, 1_000), now_ms=st.integers(0, 1_000), ttl=st.booleans())
def test_an_offer_past_its_last_start_is_refused_and_never_held(
    last_start_ms: int, now_ms: int, ttl: bool
) -> None:
    scheduler = _scheduler()
    task = job(
        "x", deadline_ms=None if ttl else last_start_ms, expires_ms=last_start_ms if ttl else None
    )
    result = scheduler.offer(task, now_ms)
    assert result is (OfferResult.EXPIRED if now_ms > last_start_ms else OfferResult.HELD)
    assert scheduler.held == (result is OfferResult.HELD)


@given(last_start_ms=st.integers(0, 500), late_ms=st.integers(1, 500))
def test_a_task_past_its_last_start_is_not_released_but_reported_once(
    last_start_ms: int, late_ms: int
) -> None:
    scheduler = _scheduler()
    scheduler.offer(job("x", deadline_ms=last_start_ms), 0)
    assert scheduler.next_wakeup_ms(0) == last_start_ms + 1
    now_ms = last_start_ms + late_ms
    assert scheduler.release(now_ms, Fleet([agent("idle", capacity=5)])) == []
    assert scheduler.held == 0
    assert scheduler.next_wakeup_ms(now_ms) == now_ms  # the report is due
    assert scheduler.offer(job("x"), now_ms) is OfferResult.DUPLICATE  # decided, not yet reported
    assert scheduler.remove("x") is None
    assert [(item.job.task_id, item.reason) for item in scheduler.expire(now_ms)] == [
        ("x", EXPIRED)
    ]
    assert scheduler.expire(now_ms) == []
    assert scheduler.next_wakeup_ms(now_ms) is None


def test_a_task_may_still_start_at_its_last_start_time() -> None:
    scheduler = _scheduler()
    scheduler.offer(job("x", deadline_ms=100), 0)
    assert [item.job.task_id for item in scheduler.release(100, Fleet([agent("a")]))] == ["x"]


@st.composite
def orphan_runs(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    timeout_ms = draw(st.integers(0, 300))
    offers_ms = sorted(draw(st.lists(st.integers(0, 400), min_size=1, max_size=8)))
    steps_ms = draw(st.lists(st.integers(1, 60), min_size=1, max_size=40))
    return timeout_ms, offers_ms, steps_ms


@given(run=orphan_runs())
def test_a_task_no_agent_can_run_is_removed_once_its_wait_is_over_and_not_before(
    run: tuple[int, list[int], list[int]],
) -> None:
    """Release then expire at each step: a task goes at the first step T with
    T >= max(first NEVER, offered) + timeout."""
    timeout_ms, offers_ms, steps_ms = run
    scheduler = _scheduler(timeout_ms)
    fleet = Fleet([agent("cpu-only", skills=["cpu"])])
    now_ms = 0
    pending = list(enumerate(offers_ms))
    first_never_ms: int | None = None
    removed_at: dict[str, int] = {}
    for step_ms in steps_ms:
        while pending and pending[0][1] <= now_ms:
            index, _ = pending.pop(0)
            scheduler.offer(job(f"g{index}", skills=["gpu"], submitted_ms=now_ms), now_ms)
        if scheduler.held and first_never_ms is None:
            first_never_ms = now_ms
        assert scheduler.release(now_ms, fleet) == []
        for item in scheduler.expire(now_ms):
            assert item.reason is NO_CAPABLE and item.job.task_id not in removed_at
            removed_at[item.job.task_id] = now_ms
        now_ms += step_ms
    step_times = [sum(steps_ms[:i]) for i in range(len(steps_ms))]
    for index, offered_ms in enumerate(offers_ms):
        offered_at = next((t for t in step_times if t >= offered_ms), None)
        if offered_at is None or first_never_ms is None:
            continue
        due_ms = max(first_never_ms, offered_at) + timeout_ms
        expected = next((t for t in step_times if t >= due_ms), None)
        assert removed_at.get(f"g{index}") == expected


def test_a_busy_capable_agent_restarts_the_wait() -> None:
    """NEVER at 0, a capable (busy) agent at 50, gone at 60: the wait counts from 60."""
    scheduler = _scheduler(timeout_ms=100)
    fleet = Fleet()
    scheduler.offer(job("x", skills=["gpu"]), 0)
    scheduler.release(0, fleet)
    fleet.agents["gpu"] = agent("gpu", capacity=0, skills=["gpu"])
    scheduler.release(50, fleet)
    del fleet.agents["gpu"]
    scheduler.release(60, fleet)
    scheduler.release(100, fleet)
    assert scheduler.expire(100) == []
    scheduler.release(160, fleet)
    assert [item.reason for item in scheduler.expire(160)] == [NO_CAPABLE]


def test_an_agent_that_joins_in_time_runs_the_task() -> None:
    scheduler = _scheduler(timeout_ms=100)
    fleet = Fleet()
    scheduler.offer(job("x", skills=["gpu"]), 0)
    scheduler.release(0, fleet)
    assert scheduler.next_wakeup_ms(0) == 100
    fleet.agents["gpu"] = agent("gpu", skills=["gpu"])
    assert [item.job.task_id for item in scheduler.release(99, fleet)] == ["x"]
    assert scheduler.expire(500) == []


def test_old_news_does_not_condemn_a_task_nobody_tried_lately() -> None:
    """NEVER seen at 0 only: at 1000 without a fresh NEVER the task stays (the next release
    confirms it, and only then it goes)."""
    scheduler = _scheduler(timeout_ms=100)
    scheduler.offer(job("x", skills=["gpu"]), 0)
    scheduler.release(0, Fleet())
    assert scheduler.expire(1_000) == []
    assert scheduler.next_wakeup_ms(1_000) is None  # no spinning while awaiting a release
    scheduler.release(1_000, Fleet())
    assert scheduler.next_wakeup_ms(1_000) == 1_000
    assert [item.reason for item in scheduler.expire(1_000)] == [NO_CAPABLE]


def test_without_a_timeout_a_task_waits_for_a_capable_agent_for_ever() -> None:
    scheduler = _scheduler(timeout_ms=None)
    scheduler.offer(job("x", skills=["gpu"]), 0)
    for now_ms in (0, 10**6, 10**9):
        assert scheduler.release(now_ms, Fleet()) == []
        assert scheduler.expire(now_ms) == []
    assert scheduler.held == 1 and scheduler.next_wakeup_ms(10**9) is None


def test_an_orphaned_class_does_not_block_other_classes() -> None:
    scheduler = _scheduler()
    scheduler.offer(job("gpu-task", skills=["gpu"]), 0)
    scheduler.offer(job("cpu-task", priority=3), 0)
    released = scheduler.release(0, Fleet([agent("cpu", capacity=1)]))
    assert [item.job.task_id for item in released] == ["cpu-task"]
