"""Preemption (``streams/core/preemption.py``): an overdue urgent task takes a preemptible slot.

The distributor's state machine (``test_distributor.py``) runs with preemption on and checks
its invariants under random events; these are the cases told one by one.
"""

from __future__ import annotations

import pytest

from streams.core.actions import (
    Action,
    Completed,
    Dispatch,
    Finished,
    Requeued,
    ResultStatus,
    StopRun,
)
from streams.core.agents import HealthConfig, Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import (
    CancelRequested,
    HeartbeatReceived,
    InFlightRecovered,
    ResultReported,
    TaskArrived,
)
from streams.core.lifecycle import Phase
from streams.core.model import Job
from streams.core.preemption import PreemptionConfig, UrgentWatch
from streams.core.routing import RoutingConfig
from streams.core.scheduling import SchedulerConfig
from streams.errors import ConfigError

AFTER_MS = 1_000
PREEMPT = PreemptionConfig(after_ms={0: AFTER_MS}, victims=frozenset({2, 3}))


def _core(preemption: PreemptionConfig = PREEMPT, *, aging_ms: int | None = None) -> Distributor:
    return Distributor(
        DistributorConfig(
            scheduler=SchedulerConfig(aging_ms=aging_ms, escalation_ms=0),
            routing=RoutingConfig(strategy="least-connections"),
            health=HealthConfig(suspect_after_ms=60_000, down_after_ms=120_000),
            lease_ms=100_000,
            preemption=preemption,
        )
    )


def _beat(agent: str, capacity: int, now_ms: int) -> HeartbeatReceived:
    return HeartbeatReceived(
        Heartbeat(agent, capacity, frozenset(), None, 1.0, 0.0, "READY", now_ms, 1)
    )


def _of(kind: type, actions: list[Action]) -> list[Action]:
    return [action for action in actions if isinstance(action, kind)]


def _saturated(core: Distributor, *levels: int) -> None:
    """One agent, one slot per task of ``levels``, each running (dispatched in order)."""
    core.handle([_beat("a", len(levels), 0)], 0)
    for index, level in enumerate(levels):
        core.handle([TaskArrived(Job(f"low{index}", level, index))], index)


def test_an_overdue_urgent_task_stops_a_preemptible_run_and_takes_its_slot() -> None:
    core = _core()
    _saturated(core, 3)
    assert core.handle([TaskArrived(Job("urgent", 0, 100))], 100) == []
    assert core.handle([], 100 + AFTER_MS - 1) == []  # not overdue yet
    assert core.next_wakeup_ms(100 + AFTER_MS - 1) == 100 + AFTER_MS
    (stop,) = core.handle([], 100 + AFTER_MS)
    assert isinstance(stop, StopRun) and stop.preempted
    assert (stop.job.task_id, stop.agent_id) == ("low0", "a")
    assert core.handle([], 100 + AFTER_MS + 500) == []  # one stop per urgent task
    ended = core.handle([ResultReported("low0", "a", 0, ResultStatus.CANCELLED)], 1_500)
    finished, requeued, dispatch = ended
    assert isinstance(finished, Finished) and isinstance(requeued, Requeued)
    assert requeued.job.task_id == "low0" and requeued.job.attempt == 0  # no attempt spent
    assert requeued.job.preempted == 1  # what the dispatcher's state keeps of it
    assert isinstance(dispatch, Dispatch) and dispatch.job.task_id == "urgent"
    assert dispatch.agent_id == "a"
    assert core.phase_of("low0") is Phase.HELD
    assert core.stats.preempted == 1 and core.stats.preempted_run_ms == 1_500
    again = core.handle([ResultReported("urgent", "a", 0, ResultStatus.SUCCEEDED)], 2_000)
    (redispatch,) = _of(Dispatch, again)
    assert redispatch.job.task_id == "low0" and redispatch.job.attempt == 0
    done = core.handle([ResultReported("low0", "a", 0, ResultStatus.SUCCEEDED)], 3_000)
    assert [a.status for a in _of(Completed, done)] == [ResultStatus.SUCCEEDED]


def test_off_by_default_an_urgent_task_waits() -> None:
    core = _core(PreemptionConfig())
    _saturated(core, 3)
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    assert core.handle([], 50_000) == [] and core.phase_of("urgent") is Phase.HELD


def test_the_victim_is_the_youngest_run_of_the_least_urgent_preemptible_level() -> None:
    core = _core()
    _saturated(core, 1, 2, 3, 3, 2)  # p1 is not preemptible
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    (stop,) = core.handle([], 100 + AFTER_MS)
    assert isinstance(stop, StopRun) and stop.job.task_id == "low3"  # the younger p3


def test_only_a_less_urgent_level_is_a_victim() -> None:
    core = _core(PreemptionConfig(after_ms={2: 0}, victims=frozenset({2})))
    _saturated(core, 2)
    core.handle([TaskArrived(Job("same-level", 2, 100))], 100)
    assert core.handle([], 50_000) == []


def test_a_task_is_preempted_once_then_runs_to_its_end() -> None:
    core = _core()
    _saturated(core, 3)
    core.handle([TaskArrived(Job("u1", 0, 100))], 100)
    core.handle([], 100 + AFTER_MS)
    core.handle([ResultReported("low0", "a", 0, ResultStatus.CANCELLED)], 1_200)
    core.handle([ResultReported("u1", "a", 0, ResultStatus.SUCCEEDED)], 1_300)
    assert core.lease_of("low0") is not None  # it runs again
    core.handle([TaskArrived(Job("u2", 0, 1_400))], 1_400)
    assert core.handle([], 1_400 + 10 * AFTER_MS) == []  # no thrash: it is not stopped again
    assert core.phase_of("u2") is Phase.HELD


def test_a_task_that_comes_back_preempted_enough_is_not_stopped_again() -> None:
    """After a restart the task comes back from the dispatcher's state with its count: the
    bound holds across restarts."""
    core = _core()
    core.handle([_beat("a", 1, 0)], 0)
    core.handle([InFlightRecovered(Job("low0", 3, 0, preempted=1), "a", 1, 0, 100_000)], 0)
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    assert core.handle([], 100 + 10 * AFTER_MS) == []
    assert core.phase_of("urgent") is Phase.HELD


def test_a_victim_that_ends_before_the_stop_keeps_its_result_and_frees_the_slot() -> None:
    core = _core()
    _saturated(core, 3)
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    core.handle([], 100 + AFTER_MS)
    ended = core.handle([ResultReported("low0", "a", 0, ResultStatus.SUCCEEDED)], 1_200)
    assert [a.status for a in _of(Completed, ended)] == [ResultStatus.SUCCEEDED]
    assert [a.job.task_id for a in _of(Dispatch, ended)] == ["urgent"]
    assert core.stats.preempted == 0


def test_a_victim_failing_retryably_before_the_stop_spends_its_attempt() -> None:
    core = _core()
    _saturated(core, 3)
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    core.handle([], 100 + AFTER_MS)
    ended = core.handle([ResultReported("low0", "a", 0, ResultStatus.RETRYABLE, "boom")], 1_200)
    assert [a.job.task_id for a in _of(Dispatch, ended)] == ["urgent"]
    assert core.phase_of("low0") is Phase.RETRYING  # its own failure: counted as any


def test_a_victim_lost_after_the_stop_goes_back_without_spending_an_attempt() -> None:
    core = _core()
    _saturated(core, 3)
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    core.handle([], 100 + AFTER_MS)
    lost = core.handle([_beat("a", 1, 100_001)], 100_001)  # its lease ran out: no result
    (requeued,) = _of(Requeued, lost)
    assert requeued.job.task_id == "low0" and requeued.job.attempt == 0
    assert [a.job.task_id for a in _of(Dispatch, lost)] == ["urgent"]


def test_a_victim_cancelled_while_it_stops_ends_cancelled() -> None:
    core = _core()
    _saturated(core, 3)
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    core.handle([], 100 + AFTER_MS)
    core.handle([CancelRequested("low0")], 1_150)
    ended = core.handle([ResultReported("low0", "a", 0, ResultStatus.CANCELLED)], 1_200)
    assert [a.status for a in _of(Completed, ended)] == [ResultStatus.CANCELLED]
    assert [a.job.task_id for a in _of(Dispatch, ended)] == ["urgent"]


def test_the_freed_slot_goes_to_the_urgent_task_not_to_an_older_aged_one() -> None:
    """With aging, a p3 task held long enough stands at effective priority 0 and was submitted
    first: it would win a slot freed in the ordinary way."""
    core = _core(aging_ms=100)
    _saturated(core, 3)
    core.handle([TaskArrived(Job("aged", 3, 10))], 10)
    core.handle([TaskArrived(Job("urgent", 0, 1_000))], 1_000)
    core.handle([], 1_000 + AFTER_MS)
    ended = core.handle([ResultReported("low0", "a", 0, ResultStatus.CANCELLED)], 2_100)
    assert [a.job.task_id for a in _of(Dispatch, ended)] == ["urgent"]


def test_a_result_marked_preempted_requeues_though_this_core_did_not_ask() -> None:
    """After a dispatcher restart the new core does not know it asked: the agent's result
    says it (``ResultReported.preempted``)."""
    core = _core()
    _saturated(core, 3)
    result = ResultReported("low0", "a", 0, ResultStatus.CANCELLED, "preempted", preempted=True)
    (_finished, requeued, dispatch) = core.handle([result], 500)
    assert isinstance(requeued, Requeued) and requeued.job.attempt == 0
    assert isinstance(dispatch, Dispatch) and dispatch.job.task_id == "low0"


def test_no_preemption_when_a_capable_agent_has_a_free_slot_or_a_quota_holds_it() -> None:
    core = Distributor(
        DistributorConfig(
            scheduler=SchedulerConfig(aging_ms=None, tenant_max_in_flight={"t": 1}),
            preemption=PREEMPT,
        )
    )
    core.handle([_beat("a", 1, 0), _beat("b", 1, 0)], 0)
    core.handle([TaskArrived(Job("mine", 0, 0, tenant="t"))], 0)  # the tenant's one
    core.handle([TaskArrived(Job("low", 3, 0))], 0)
    core.handle([TaskArrived(Job("urgent", 0, 10, tenant="t"))], 10)
    assert _of(StopRun, core.handle([], 10 + 10 * AFTER_MS)) == []


def test_a_slot_freed_for_a_task_its_quota_now_holds_back_goes_to_the_others() -> None:
    """The quota admitted the urgent task when the run was stopped; by the time the slot is
    free, another task of its tenant took the tenant's one place: the urgent task waits."""
    core = Distributor(
        DistributorConfig(
            scheduler=SchedulerConfig(aging_ms=None, tenant_max_in_flight={"t": 1}),
            routing=RoutingConfig(strategy="least-connections"),
            lease_ms=100_000,
            preemption=PREEMPT,
        )
    )
    gpu = frozenset({"gpu"})
    core.handle([HeartbeatReceived(Heartbeat("a", 1, gpu, None, 1.0, 0.0, "READY", 0, 1))], 0)
    core.handle([TaskArrived(Job("low", 3, 0))], 0)
    core.handle([TaskArrived(Job("urgent", 0, 10, tenant="t", required_skills=gpu))], 10)
    (stop,) = _of(StopRun, core.handle([], 10 + AFTER_MS))
    assert stop.job.task_id == "low"
    joined = core.handle(
        [_beat("b", 1, 2_000), TaskArrived(Job("other", 1, 2_000, tenant="t"))], 2_000
    )
    assert [(d.job.task_id, d.agent_id) for d in _of(Dispatch, joined)] == [("other", "b")]
    freed = core.handle([ResultReported("low", "a", 0, ResultStatus.CANCELLED)], 2_100)
    assert [d.job.task_id for d in _of(Dispatch, freed)] == ["low"]  # not "urgent": quota
    assert core.phase_of("urgent") is Phase.HELD


@pytest.mark.parametrize(
    ("config", "levels", "message"),
    [
        (PreemptionConfig(after_ms={4: 10}), 4, r"levels \[4\] do not exist"),
        (PreemptionConfig(victims=frozenset({9})), 4, r"levels \[9\] do not exist"),
    ],
)
def test_levels_named_must_exist(config: PreemptionConfig, levels: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DistributorConfig(scheduler=SchedulerConfig(levels=levels), preemption=config)


def test_config_mistakes_are_named() -> None:
    with pytest.raises(ConfigError, match="after_ms of level 0 must be >= 0"):
        PreemptionConfig(after_ms={0: -1})
    with pytest.raises(ConfigError, match="max_per_task must be >= 1"):
        PreemptionConfig(max_per_task=0)
    assert not PreemptionConfig(after_ms={2: 0}, victims=frozenset({1})).enabled
    assert PREEMPT.enabled and not PreemptionConfig().enabled


def test_an_overdue_task_with_nothing_to_preempt_wakes_nobody_up() -> None:
    """Its wait passed while no preemptible run is in flight: no wake-up in the past (a
    driver sleeping until it would spin)."""
    core = _core()
    _saturated(core, 1)  # p1 is not preemptible
    core.handle([TaskArrived(Job("urgent", 0, 100))], 100)
    assert core.next_wakeup_ms(100) == 100 + AFTER_MS
    assert core.handle([], 5_000) == []
    wakeup = core.next_wakeup_ms(5_000)
    assert wakeup is None or wakeup > 5_000


def test_the_watch_forgets_overdue_tasks_that_left_though_nothing_is_preempted() -> None:
    """With nothing to preempt, ``overdue()`` is never asked; tasks overdue once and gone since
    (dispatched, ended) must not pile up in the watch all the same."""
    held: set[str] = set()
    watch = UrgentWatch(
        PreemptionConfig(after_ms={0: 10}, victims=frozenset({3})), held.__contains__
    )
    for i in range(10_000):
        task_id = f"u{i}"
        held.add(task_id)
        watch.watch(Job(task_id, 0, i))
        watch.advance(i + 10)  # overdue now ...
        held.discard(task_id)  # ... and dispatched the moment after
    assert len(watch) <= 2 * 1_024 + 1
