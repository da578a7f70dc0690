"""Agents that handle some task types only: the core sends a type only to agents that handle
it (or name no types), and a type nobody free handles never holds up the others."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.actions import DeadLetter, Dispatch, ResultStatus
from streams.core.agents import Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import Event, HeartbeatReceived, ResultReported, TaskArrived
from streams.core.model import Job
from streams.core.scheduling import SchedulerConfig

TYPES = ("resize", "thumb", "ocr")
HANDLED = st.none() | st.frozensets(st.sampled_from(TYPES), max_size=3)


def _beat(agent: str, capacity: int, task_types: frozenset[str] | None) -> HeartbeatReceived:
    return HeartbeatReceived(
        Heartbeat(agent, capacity, frozenset(), None, 1.0, 0.0, "READY", 0, 1, task_types)
    )


@given(
    fleet=st.lists(st.tuples(st.integers(1, 4), HANDLED), min_size=1, max_size=4),
    tasks=st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 3)), max_size=40),
)
def test_a_task_goes_only_to_an_agent_that_handles_its_type(
    fleet: list[tuple[int, frozenset[str] | None]], tasks: list[tuple[str, int]]
) -> None:
    core = Distributor(DistributorConfig())
    handles = {f"a{index}": types for index, (_, types) in enumerate(fleet)}
    events: list[Event] = [
        _beat(f"a{index}", capacity, types) for index, (capacity, types) in enumerate(fleet)
    ]
    jobs = {
        f"t{i}": Job(f"t{i}", priority, 0, task_type=kind)
        for i, (kind, priority) in enumerate(tasks)
    }
    events += [TaskArrived(job) for job in jobs.values()]
    dispatched = [a for a in core.handle(events, 0) if isinstance(a, Dispatch)]
    for action in dispatched:
        types = handles[action.agent_id]
        assert types is None or action.job.task_type in types
    capable_slots = {
        kind: sum(c for c, types in fleet if types is None or kind in types) for kind in TYPES
    }
    for kind in TYPES:
        if capable_slots[kind] == 0:
            assert not [a for a in dispatched if a.job.task_type == kind]


def test_a_type_nobody_free_handles_waits_without_holding_up_the_others() -> None:
    core = Distributor(DistributorConfig())
    events: list[Event] = [_beat("resizer", 2, frozenset({"resize"}))]
    events += [TaskArrived(Job(f"thumb{i}", 0, 0, task_type="thumb")) for i in range(3)]
    events += [TaskArrived(Job(f"resize{i}", 3, 0, task_type="resize")) for i in range(2)]
    sent = [a.job.task_id for a in core.handle(events, 0) if isinstance(a, Dispatch)]
    assert sorted(sent) == ["resize0", "resize1"]  # the urgent thumbs wait for a thumb agent
    late = core.handle([_beat("any", 3, None)], 1)
    assert sorted(a.job.task_id for a in late if isinstance(a, Dispatch)) == [
        "thumb0",
        "thumb1",
        "thumb2",
    ]


def test_a_rejection_for_want_of_a_handler_spends_no_attempt_and_the_agent_gets_no_more() -> None:
    """An agent that does not name its types (an older one) and has no handler for ``thumb``:
    its rejection sends the task elsewhere at the same attempt, and no more thumbs come to it
    until it restarts."""
    core = Distributor(DistributorConfig())
    core.handle([_beat("old", 1, None)], 0)
    (first,) = core.handle([TaskArrived(Job("t1", 1, 0, task_type="thumb"))], 1)
    assert isinstance(first, Dispatch) and first.agent_id == "old"
    rejected = ResultReported("t1", "old", 0, ResultStatus.REJECTED, "no handler", no_handler=True)
    actions = core.handle([rejected, _beat("new", 1, frozenset({"thumb"}))], 2)
    (again,) = [a for a in actions if isinstance(a, Dispatch)]
    assert (again.agent_id, again.job.attempt) == ("new", 0)
    assert not [a for a in actions if isinstance(a, DeadLetter)]
    held = core.handle([TaskArrived(Job("t2", 1, 0, task_type="thumb"))], 3)
    assert not [a for a in held if isinstance(a, Dispatch)]  # "old" is free, but not for thumbs
    resized = core.handle([TaskArrived(Job("r1", 1, 0, task_type="resize"))], 4)
    assert [a.agent_id for a in resized if isinstance(a, Dispatch)] == ["old"]
    restarted = HeartbeatReceived(
        Heartbeat("old", 2, frozenset(), None, 1.0, 0.0, "READY", 5, 2, None)
    )
    after = core.handle([restarted], 5)  # a new run may have the handler: thumbs again
    assert "t2" in [a.job.task_id for a in after if isinstance(a, Dispatch)]


def test_a_type_no_live_agent_handles_is_counted_as_waiting_for_one() -> None:
    config = DistributorConfig(scheduler=SchedulerConfig(no_capable_agent_timeout_ms=60_000))
    core = Distributor(config)
    events: list[Event] = [_beat("resizer", 2, frozenset({"resize"}))]
    events += [TaskArrived(Job(f"ocr{i}", 1, 0, task_type="ocr")) for i in range(3)]
    core.handle(events, 0)
    assert core.without_capable_agent() == {"ocr": 3}
    core.handle([_beat("reader", 3, frozenset({"ocr"}))], 1)
    assert core.without_capable_agent() == {}
