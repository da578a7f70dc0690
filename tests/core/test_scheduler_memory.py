"""Bounded memory: what leaves the scheduler does not stay behind in its indexes, and the
clean-ups that guarantee it keep the order intact."""

from __future__ import annotations

import gc
import random
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.model import Job
from streams.core.scheduling import Scheduler, SchedulerConfig
from tests.core.test_scheduler_fakes import Fleet, agent, job, order_key


class _OneSlot:
    """A placer with one slot that keeps no history (unlike ``Fleet``, which logs)."""

    total_slots = 1
    free_slots = 1

    def place(self, job: Job) -> str | None:
        if self.free_slots == 0:
            return None
        self.free_slots = 0
        return "a"


def _churn(scheduler: Scheduler, placer: _OneSlot, start: int, count: int) -> None:
    """Tasks with far deadlines and various levels come and go: half cancelled, half run."""
    rng = random.Random(start)
    for index in range(start, start + count):
        now_ms = index
        task = job(f"t{index}", rng.randrange(4), submitted_ms=now_ms, deadline_ms=now_ms + 10**9)
        scheduler.offer(task, now_ms)
        if index % 2:
            scheduler.remove(task.task_id)
        else:
            for item in scheduler.release(now_ms, placer):
                placer.free_slots = 1
                scheduler.task_finished(item.job)


def test_memory_does_not_grow_with_the_tasks_that_passed_through() -> None:
    scheduler = Scheduler(SchedulerConfig(aging_ms=5, escalation_ms=0))
    placer = _OneSlot()
    _churn(scheduler, placer, 0, 3_000)
    tracemalloc.start()
    try:
        _churn(scheduler, placer, 3_000, 3_000)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        _churn(scheduler, placer, 6_000, 30_000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scheduler.held == 0
    assert after - before < 200_000  # 30,000 tasks kept would take over 10 MB


@settings(max_examples=20, deadline=None)
@given(
    count=st.integers(100, 600),
    cancelled_share=st.floats(0.5, 0.95),
    seed=st.integers(0, 2**16),
)
def test_cancelling_most_of_a_queue_keeps_the_rest_in_order(
    count: int, cancelled_share: float, seed: int
) -> None:
    rng = random.Random(seed)
    scheduler = Scheduler(SchedulerConfig(levels=1, aging_ms=None, escalation_ms=0))
    keys = {}
    for seq in range(count):
        deadline_ms = rng.choice((None, rng.randrange(10**6, 2 * 10**6)))
        task = job(f"t{seq}", submitted_ms=-rng.randrange(1_000), deadline_ms=deadline_ms)
        scheduler.offer(task, 0)
        keys[task.task_id] = order_key(task, seq)
    for task_id in rng.sample(sorted(keys), int(count * cancelled_share)):
        assert scheduler.remove(task_id) is not None
        del keys[task_id]
    released = [item.job.task_id for item in scheduler.release(0, Fleet([agent("a", count)]))]
    assert released == sorted(keys, key=keys.__getitem__)
