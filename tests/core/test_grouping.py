"""Grouping for batch handlers (``streams.core.grouping``): the tasks of a type whose agents
announce a batch handler go together, up to its size, a group that is not full held at most
its maximum wait, and never past a task's last start; other types and the late-binding,
capacity and bookkeeping invariants of the distributor are untouched."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.actions import Action, DeadLetter, Dispatch, ResultStatus
from streams.core.agents import Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import Event, HeartbeatReceived, ResultReported, TaskArrived
from streams.core.grouping import BatchHandler, BatchHandlers, GroupingConfig
from streams.core.lifecycle import Phase
from streams.core.model import Job
from streams.core.routing import RoutingConfig
from streams.core.scheduling import SchedulerConfig
from tests.core.test_distributor import DistributorMachine

WAIT_MS = 100
BATCH = "embed"
SINGLE = "resize"


def _config(*, enabled: bool = True, max_wait_ms: int = WAIT_MS) -> DistributorConfig:
    return DistributorConfig(
        scheduler=SchedulerConfig(aging_ms=None, escalation_ms=0),
        routing=RoutingConfig(strategy="least-connections"),
        grouping=GroupingConfig(enabled=enabled, max_wait_ms=max_wait_ms),
    )


def _beat(
    agent: str, capacity: int, batches: tuple[BatchHandler, ...], sent_ms: int = 0
) -> HeartbeatReceived:
    return HeartbeatReceived(
        Heartbeat(
            agent,
            capacity,
            frozenset(),
            None,
            1.0,
            0.0,
            "READY",
            sent_ms,
            1,
            batch_handlers=batches,
        )
    )


def _embedder(
    agent: str, capacity: int = 32, size: int = 8, wait_ms: int = 500
) -> HeartbeatReceived:
    return _beat(agent, capacity, (BatchHandler(BATCH, size, wait_ms),))


def _tasks(count: int, now_ms: int = 0, task_type: str = BATCH, prefix: str = "t") -> list[Event]:
    return [TaskArrived(Job(f"{prefix}{i}", 1, now_ms, task_type=task_type)) for i in range(count)]


def _sent(actions: list[Action]) -> list[Dispatch]:
    return [action for action in actions if isinstance(action, Dispatch)]


# --- examples ----------------------------------------------------------------------------------


def test_a_group_that_is_not_full_waits_its_maximum_wait_then_goes_whole() -> None:
    core = Distributor(_config())
    assert _sent(core.handle([_embedder("a"), *_tasks(3)], 0)) == []
    assert core.next_wakeup_ms(0) == WAIT_MS
    assert _sent(core.tick(WAIT_MS - 1)) == []
    sent = _sent(core.tick(WAIT_MS))
    assert [d.agent_id for d in sent] == ["a"] * 3
    assert all(d.grouped for d in sent)  # the agent hands them to its handler at once


def test_the_agents_own_max_wait_bounds_the_hold_when_it_is_shorter() -> None:
    core = Distributor(_config())
    core.handle([_embedder("a", wait_ms=20), *_tasks(3)], 0)
    assert core.next_wakeup_ms(0) == 20
    assert len(_sent(core.tick(20))) == 3


def test_a_full_group_goes_at_once_to_one_agent() -> None:
    core = Distributor(_config())
    events = [_embedder("a"), _embedder("b"), _embedder("c"), *_tasks(16)]
    sent = _sent(core.handle(events, 0))
    assert Counter(d.agent_id for d in sent) == {"a": 8, "b": 8}


def test_without_grouping_the_tasks_spread_over_the_agents() -> None:
    core = Distributor(_config(enabled=False))
    events = [_embedder("a"), _embedder("b"), _embedder("c"), *_tasks(16)]
    sent = _sent(core.handle(events, 0))
    assert sorted(Counter(d.agent_id for d in sent).values()) == [5, 5, 6]
    assert not any(d.grouped for d in sent)


def test_a_task_whose_last_start_is_near_is_not_held() -> None:
    core = Distributor(_config())
    job = Job("urgent", 1, 0, task_type=BATCH, deadline_ms=WAIT_MS)
    sent = _sent(core.handle([_embedder("a"), TaskArrived(job)], 0))
    assert [d.job.task_id for d in sent] == ["urgent"]


def test_a_group_goes_before_its_tasks_last_start() -> None:
    core = Distributor(_config())
    job = Job("soon", 1, 0, task_type=BATCH, deadline_ms=WAIT_MS + 30)
    assert _sent(core.handle([_embedder("a"), TaskArrived(job)], 0)) == []
    assert core.next_wakeup_ms(0) == 30
    assert len(_sent(core.tick(30))) == 1


def test_an_agent_without_batch_handlers_and_other_types_are_not_grouped() -> None:
    core = Distributor(_config())
    events = [_beat("old", 4, ()), *_tasks(2), *_tasks(2, task_type=SINGLE, prefix="s")]
    assert len(_sent(core.handle(events, 0))) == 4
    core = Distributor(_config())
    events = [_embedder("a"), *_tasks(2), *_tasks(2, task_type=SINGLE, prefix="s")]
    sent = _sent(core.handle(events, 0))
    assert sorted(d.job.task_id for d in sent) == ["s0", "s1"]
    assert not any(d.grouped for d in sent)


def test_a_batch_size_of_one_or_a_capacity_of_one_is_not_grouped() -> None:
    for beat in (_embedder("a", size=1), _embedder("a", capacity=1)):
        core = Distributor(_config())
        assert len(_sent(core.handle([beat, *_tasks(1)], 0))) == 1


def test_a_group_never_takes_an_agent_past_its_free_slots() -> None:
    core = Distributor(_config())
    sent = _sent(core.handle([_embedder("a", capacity=5), *_tasks(12)], 0))
    assert len(sent) == 5  # the group's size is the agent's capacity: full, and 7 wait
    results = [ResultReported(d.job.task_id, "a", 0, ResultStatus.SUCCEEDED) for d in sent]
    assert len(_sent(core.handle(results, 5))) == 5


# --- properties ----------------------------------------------------------------------------------

FLEET = st.lists(
    st.tuples(st.integers(1, 12), st.none() | st.tuples(st.integers(1, 10), st.integers(0, 300))),
    min_size=1,
    max_size=4,
)
ARRIVALS = st.lists(
    st.tuples(
        st.sampled_from([BATCH, BATCH, SINGLE]),
        st.integers(0, 2),
        st.none() | st.integers(0, 400),
        st.integers(0, 80),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(fleet=FLEET, arrivals=ARRIVALS, finish=st.lists(st.booleans(), max_size=60))
def test_grouping_keeps_capacity_deadlines_and_every_task_and_holds_no_longer_than_its_wait(
    fleet: list[tuple[int, tuple[int, int] | None]],
    arrivals: list[tuple[str, int, int | None, int]],
    finish: list[bool],
) -> None:
    """Tasks arrive over time (some with a deadline), agents finish some of what they run:
    at every step no agent is over capacity, nothing is dispatched past its last start or
    twice, every task is held, running or ended, a task of a type nobody batches waits only
    for a slot, and a batch type's task waits past its maximum wait only for a slot."""
    core = Distributor(_config())
    beats, longest_hold_ms = _fleet(fleet)
    core.handle(beats, 0)
    now_ms = 0
    offered: dict[str, tuple[int, Job]] = {}
    running: dict[str, str] = {}
    ended: set[str] = set()
    for step, (task_type, priority, deadline_in, gap_ms) in enumerate(arrivals):
        now_ms += gap_ms
        deadline = None if deadline_in is None else now_ms + deadline_in
        job = Job(f"t{step}", priority, now_ms, task_type=task_type, deadline_ms=deadline)
        offered[job.task_id] = (now_ms, job)
        events: list[Event] = [TaskArrived(job)]
        done = [t for t, keep in zip(sorted(running), finish[step:], strict=False) if keep]
        for task_id in done:
            events.append(ResultReported(task_id, running.pop(task_id), 0, ResultStatus.SUCCEEDED))
            ended.add(task_id)
        _check_pass(core.handle(events, now_ms), now_ms, running, ended)
        for agent in core.agents():
            assert agent.in_flight <= agent.capacity, "over capacity"
        assert core.held + len(running) + len(ended) == len(offered), "a task was lost"
        _check_holds(core, offered, now_ms, longest_hold_ms)


def _fleet(
    fleet: list[tuple[int, tuple[int, int] | None]],
) -> tuple[list[Event], int]:
    """The agents' heartbeats, and the longest a group may be held."""
    beats: list[Event] = []
    waits = [WAIT_MS]
    for index, (capacity, batch) in enumerate(fleet):
        handlers = () if batch is None else (BatchHandler(BATCH, batch[0], batch[1]),)
        waits += [] if batch is None else [batch[1]]
        beats.append(_beat(f"a{index}", capacity, handlers))
    return beats, min(waits)


def _check_pass(
    actions: list[Action], now_ms: int, running: dict[str, str], ended: set[str]
) -> None:
    for action in actions:
        if isinstance(action, Dispatch):
            task_id = action.job.task_id
            assert task_id not in running and task_id not in ended, f"{task_id} sent twice"
            last = action.job.last_start_ms()
            assert last is None or now_ms <= last, "dispatched past its last start"
            running[task_id] = action.agent_id
        elif isinstance(action, DeadLetter):
            ended.add(action.job.task_id)


def _check_holds(
    core: Distributor, offered: dict[str, tuple[int, Job]], now_ms: int, hold_ms: int
) -> None:
    """While some agent has a free slot, only a batch type's task waits, and not past its
    maximum wait; the core wakes up by then."""
    if not any(agent.free_slots for agent in core.agents()):
        return
    for task_id, (at_ms, job) in offered.items():
        if core.phase_of(task_id) is not Phase.HELD:
            continue
        assert job.task_type == BATCH, f"{task_id} of a type nobody batches held by a free slot"
        assert now_ms < at_ms + hold_ms, f"{task_id} held past its wait"
    wake = core.next_wakeup_ms(now_ms)
    assert not core.held or (wake is not None and wake <= now_ms + hold_ms)


@settings(max_examples=150, deadline=None)
@given(
    priorities=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    capacity=st.integers(1, 20),
)
def test_within_a_batch_type_the_better_priority_goes_first(
    priorities: list[int], capacity: int
) -> None:
    """Grouping changes where and when a batch type goes, never its order: whatever a pass
    sends, no task of a better priority that the agent could run is left held."""
    core = Distributor(_config())
    jobs = [Job(f"t{i}", p, 0, task_type=BATCH) for i, p in enumerate(priorities)]
    core.handle([_embedder("a", capacity=capacity)], 0)
    for now_ms in (0, WAIT_MS):
        sent = _sent(core.handle([TaskArrived(j) for j in jobs] if now_ms == 0 else [], now_ms))
        if sent:
            worst = max(d.job.priority for d in sent)
            held = [j for j in jobs if core.phase_of(j.task_id) is Phase.HELD]
            assert all(j.priority >= worst for j in held)


# --- the distributor's state machine, with agents that announce batch handlers ----------------


class GroupingMachine(DistributorMachine):
    """Every invariant of ``DistributorMachine`` (nothing lost or ended twice, never over
    capacity, never past a deadline, key order), with two agents announcing a batch handler for
    the machine's one task type: its tasks are held and grouped."""

    def _beat(self, agent: str) -> Heartbeat:
        beat = super()._beat(agent)
        handlers = {"a": (BatchHandler("default", 2, 80),), "c": (BatchHandler("default", 3, 150),)}
        return Heartbeat(
            beat.agent_id,
            beat.capacity,
            beat.skills,
            beat.zone,
            beat.weight,
            beat.cost_per_task,
            beat.status,
            beat.sent_ms,
            beat.incarnation,
            beat.task_types,
            batch_handlers=handlers.get(agent, ()),
        )


GroupingMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None
)
TestGroupingDistributor = GroupingMachine.TestCase


def test_a_type_split_over_two_agents_in_one_pass_goes_as_a_group_to_each() -> None:
    """Both agents get their share marked grouped, so neither waits its own batcher again."""
    core = Distributor(_config())
    beats = [_embedder("a", capacity=6), _embedder("b", capacity=6)]
    core.handle([*beats, *_tasks(4, task_type=SINGLE, prefix="s")], 0)  # two slots taken on each
    sent = _sent(core.handle(_tasks(6), 10))
    assert Counter(d.agent_id for d in sent) == {"a": 4, "b": 2}
    assert all(d.grouped for d in sent)


def test_a_group_no_agent_can_take_does_not_hide_another_groups_due_time() -> None:
    def beat(agent: str, capacity: int, task_type: str) -> HeartbeatReceived:
        handlers = (BatchHandler(task_type, 8, 500),)
        hb = Heartbeat(agent, capacity, frozenset(), None, 1.0, 0.0, "READY", 0, 1,
                       task_types=frozenset({task_type}), batch_handlers=handlers)  # fmt: skip
        return HeartbeatReceived(hb)

    core = Distributor(_config())
    core.handle([beat("a", 3, BATCH), beat("b", 4, "other"), *_tasks(3, prefix="f")], 0)
    core.tick(WAIT_MS)  # a's three slots taken by its first group
    core.handle(_tasks(2, now_ms=WAIT_MS, prefix="x"), WAIT_MS)
    assert _sent(core.tick(2 * WAIT_MS)) == []  # due, but a is full: held until a slot frees
    core.handle(_tasks(2, now_ms=250, task_type="other", prefix="o"), 250)
    assert core.next_wakeup_ms(250) == 250 + WAIT_MS
    assert [d.agent_id for d in _sent(core.tick(250 + WAIT_MS))] == ["b", "b"]


def test_tasks_held_before_a_type_is_announced_count_from_when_they_came() -> None:
    core = Distributor(_config())
    assert _sent(core.handle(_tasks(3), 0)) == []  # no agent yet
    assert _sent(core.handle([_embedder("a", wait_ms=500)], 50)) == []
    assert core.next_wakeup_ms(50) == WAIT_MS  # held since 0, not since the announcement
    assert len(_sent(core.tick(WAIT_MS))) == 3
    late = Distributor(_config())
    late.handle(_tasks(8), 0)
    assert len(_sent(late.handle([_embedder("a", size=8)], 10))) == 8  # a full group at once


def test_a_type_announced_again_counts_its_held_tasks_again() -> None:
    core = Distributor(_config())
    core.handle([_embedder("a", size=8)], 0)
    core.handle([_beat("a", 0, (), sent_ms=1), *_tasks(3, 1)], 1)  # no slot, no batch handler
    again = _beat("a", 32, (BatchHandler(BATCH, 4, 500),), sent_ms=2)
    sent = _sent(core.handle([again, *_tasks(1, 2, prefix="u")], 2))
    assert len(sent) == 4 and all(d.grouped for d in sent)  # the 3 held ones count again


def test_the_handlers_say_which_types_came_and_went() -> None:
    handlers = BatchHandlers()
    assert handlers.heard("a", (BatchHandler(BATCH, 8, 50),)) == ([BATCH], [])
    assert handlers.heard("b", (BatchHandler(BATCH, 4, 50),)) == ([], [])  # a has it already
    assert handlers.heard("a", (BatchHandler(BATCH, 16, 50),)) == ([], [])  # only resized
    assert handlers.heard("a", ()) == ([], [])  # b still announces it
    assert handlers.heard("b", (BatchHandler(SINGLE, 2, 0),)) == ([SINGLE], [BATCH])
    assert handlers.heard("b", ()) == ([], [SINGLE]) and not handlers
