"""The dispatcher's pure pieces, without a broker: in-order commits, the registration view,
the net changes a checkpoint writes, the configuration."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streams.adapters.dispatcher import DispatcherConfig
from streams.adapters.dispatcher.checkpoint import Checkpointer
from streams.adapters.dispatcher.effects import Effects
from streams.adapters.dispatcher.engine import Engine
from streams.adapters.dispatcher.intake import TaskBudget
from streams.adapters.dispatcher.origin import Origin
from streams.adapters.dispatcher.registrations import Registrations
from streams.adapters.dispatcher.slots import AgentSlots
from streams.adapters.dispatcher.state import Record, ShardState
from streams.adapters.metrics import DispatcherMetrics
from streams.adapters.offsets import OffsetTracker
from streams.core.actions import Action, Dispatch, Requeued, Retry
from streams.core.distributor import Distributor
from streams.core.events import Event, TaskArrived
from streams.errors import ConfigError
from streams.settings import Settings, load_settings
from streams.wire import (
    GROUPED_HEADER,
    AgentRegistration,
    AssignmentBatch,
    Codec,
    EndedTasks,
    RegistrationStatus,
    ResultBatch,
    Task,
    TaskResult,
    TaskState,
    TaskStatus,
    task_to_job,
)

CODEC = Codec()


def test_a_commit_waits_for_every_earlier_record_of_its_partition() -> None:
    tracker = OffsetTracker(0)
    for offset in range(4):
        tracker.take(offset)
    tracker.finish(2)
    tracker.finish(1)
    assert tracker.to_commit() is None  # offset 0 is not finished: nothing may be committed
    tracker.finish(0)
    assert tracker.to_commit() == 3
    tracker.finish(3)
    assert tracker.to_commit() == 4 and tracker.unfinished == 0


def _origin(task_id: str, tracker: OffsetTracker, offset: int) -> Origin:
    task = Task(task_id=task_id, type="t", priority=0, payload=b"", submitted_at=1)
    tracker.take(offset)
    return Origin(task, 0, topic="tasks", offset=offset, tracker=tracker)


def _dispatch(origin: Origin, attempt: int = 0) -> Dispatch:
    job = task_to_job(origin.task_at(attempt), origin)
    return Dispatch(job, "a1", 3, 1_000, 5)


def test_a_checkpoint_writes_net_changes_of_tasks_open_for_a_whole_interval() -> None:
    """Dispatched and ended between two checkpoints: nothing. Still open at the checkpoint after
    its dispatch: one record, and its input finished then. Closed later: one deletion. Ended
    keys: one record per checkpoint, the oldest deleted past the window."""
    tracker = OffsetTracker(0)
    state = ShardState(0)
    quick, slow = _origin("quick", tracker, 0), _origin("slow", tracker, 1)
    state.note("quick", _dispatch(quick))
    state.note("slow", _dispatch(slow))
    state.note("quick", None)
    quick.finish_input()
    state.ended.append("quick")
    first = state.drain(CODEC, now_ms=10, window=2)
    assert [record.key for record in first] == [b"e:000000000000"]  # slow is fresh: next time
    assert CODEC.decode(first[0].value or b"", EndedTasks).keys == ("quick",)
    assert tracker.committable() == 1  # slow's input still backs it
    second = state.drain(CODEC, now_ms=20, window=2)
    assert [record.key for record in second] == [b"t:slow"]
    opened = CODEC.decode(second[0].value or b"", TaskState)
    assert (opened.task.task_id, opened.agent_id, opened.epoch, opened.lease_ms) == (
        "slow",
        "a1",
        3,
        1_000,
    )
    assert tracker.committable() == 2  # its state backs it now
    state.note("slow", Requeued(task_to_job(slow.task_at(1), slow), "a1", "lost"))
    state.ended += ["x", "y"]
    third = state.drain(CODEC, now_ms=30, window=2)
    requeued = CODEC.decode(third[0].value or b"", TaskState)
    assert (requeued.agent_id, requeued.task.attempt) == (None, 1)  # waits for a slot again
    assert [record.key for record in third[1:]] == [b"e:000000000001", b"e:000000000000"]
    assert third[2].value is None  # the oldest ended keys deleted: the window holds 2
    state.note("slow", None)
    assert state.drain(CODEC, now_ms=40, window=2) == [Record(b"t:slow", None)]
    assert state.drain(CODEC, now_ms=50, window=2) == []


def test_a_last_checkpoint_writes_every_open_task() -> None:
    tracker = OffsetTracker(0)
    state = ShardState(0)
    state.note("t", _dispatch(_origin("t", tracker, 0)))
    assert [record.key for record in state.drain(CODEC, now_ms=1, window=9, final=True)] == [b"t:t"]
    assert tracker.committable() == 1


def test_a_task_preempted_before_any_checkpoint_is_written_with_its_count() -> None:
    """Queued again before a checkpoint, a task is left to its input, unless a run of it was
    preempted: then its record keeps the count, which its input does not hold."""
    tracker = OffsetTracker(0)
    state = ShardState(0)
    stopped, lost = _origin("stopped", tracker, 0), _origin("lost", tracker, 1)
    for origin, preempted in ((stopped, 1), (lost, 0)):
        job = task_to_job(origin.task_at(0), origin, preempted=preempted)
        state.note(origin.task.task_id, Requeued(job, "a1", "preempted"))
    (record,) = state.drain(CODEC, now_ms=10, window=9)
    assert record.key == b"t:stopped"
    written = CODEC.decode(record.value or b"", TaskState)
    assert (written.agent_id, written.preempted, written.task.attempt) == (None, 1, 0)
    assert tracker.committable() == 1  # its state backs it; "lost" is still backed by its input


def test_a_dispatch_is_written_at_once_when_the_input_does_not_say_it_all() -> None:
    """A fresh dispatch waits a checkpoint, backed by its input; not one of a task preempted
    (its input lacks the count), nor one of a task whose record says it waits (the record would
    be wrong where it runs)."""
    tracker = OffsetTracker(0)
    state = ShardState(0)
    young, plain, again = (_origin(name, tracker, i) for i, name in enumerate("ypa"))
    state.note("a", _dispatch(again))
    state.drain(CODEC, now_ms=1, window=9)
    state.drain(CODEC, now_ms=2, window=9)  # "a" ran through a whole interval: written
    state.note("a", Requeued(task_to_job(again.task_at(1), again), "a1", "lost"))
    state.drain(CODEC, now_ms=3, window=9)  # its record says it waits
    state.note("y", Dispatch(task_to_job(young.task, young, preempted=1), "a1", 3, 1_000, 5))
    state.note("p", _dispatch(plain))
    state.note("a", _dispatch(again, attempt=1))
    first = state.drain(CODEC, now_ms=4, window=9)
    written = {r.key: CODEC.decode(r.value or b"", TaskState) for r in first}
    assert set(written) == {b"t:y", b"t:a"}  # "p" waits a checkpoint, backed by its input
    assert (written[b"t:y"].preempted, written[b"t:a"].agent_id) == (1, "a1")
    assert [r.key for r in state.drain(CODEC, now_ms=5, window=9)] == [b"t:p"]


def _claim(agent: str, partition: int, epoch: int, active: bool = True) -> AgentRegistration:
    status = RegistrationStatus.ACTIVE if active else RegistrationStatus.RELEASED
    return AgentRegistration(
        agent_id=agent,
        partition=partition,
        epoch=epoch,
        start_offset=0,
        status=status,
        registered_at=0,
        renewed_at=0,
        capacity=1,
    )


@pytest.mark.parametrize(
    ("records", "ended", "active"),
    [
        ([_claim("a", 0, 1), _claim("a", 0, 1)], [[], []], {"a": 1}),  # a renewal
        ([_claim("a", 0, 1), _claim("a", 0, 2)], [[], ["a"]], {"a": 2}),  # a restart
        ([_claim("a", 0, 1), _claim("a", 0, 1, False)], [[], ["a"]], {}),  # released
        ([_claim("a", 0, 1), _claim("b", 0, 2)], [[], ["a"]], {"b": 2}),  # taken over
        ([_claim("a", 0, 1), _claim("b", 1, 1)], [[], []], {"a": 1, "b": 1}),
        # b lost the race for partition 0 (a's claim came first) and claims 1 instead
        ([_claim("a", 0, 1), _claim("b", 0, 1), _claim("b", 1, 1)], [[], [], []], {"a": 1, "b": 1}),
    ],
)
def test_registrations_say_whose_claim_ends(
    records: list[AgentRegistration], ended: list[list[str]], active: dict[str, int]
) -> None:
    regs = Registrations()
    assert [regs.apply(record) for record in records] == ended
    found = {agent: regs.active(agent) for agent in ("a", "b")}
    assert {agent: reg.epoch for agent, reg in found.items() if reg is not None} == active


def test_timings_out_of_order_are_refused() -> None:
    with pytest.raises(ConfigError, match="down_after_ms"):
        DispatcherConfig(suspect_after_ms=5_000, down_after_ms=4_000)
    with pytest.raises(ConfigError, match="lease_ms"):
        DispatcherConfig(lease_ms=0)


def test_dispatcher_strategy_reaches_the_router_and_bad_names_are_refused() -> None:
    config = DispatcherConfig(strategy="round-robin-push")
    assert config.distributor(load_settings()).routing.strategy == "round-robin-push"
    with pytest.raises(ConfigError, match="strategy"):
        DispatcherConfig(strategy="fastest-please")


@given(
    capacity=st.integers(min_value=0, max_value=10_000),
    share=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)
def test_an_agent_counts_its_slots_plus_the_prefetch_rounded_down(
    capacity: int, share: float
) -> None:
    slots = DispatcherConfig(prefetch_share=share).slots(capacity)
    assert capacity <= slots <= capacity + capacity * share
    assert slots - capacity == int(capacity * share)
    assert DispatcherConfig(prefetch_share=0.0).slots(capacity) == capacity


@given(
    capacity=st.integers(min_value=0, max_value=10_000),
    share=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    prefetch=st.integers(min_value=-1, max_value=20_000),
)
def test_an_agent_is_counted_no_more_prefetch_than_it_reads_ahead(
    capacity: int, share: float, prefetch: int
) -> None:
    config = DispatcherConfig(prefetch_share=share)
    slots = config.slots(capacity, prefetch)
    assert capacity <= slots <= config.slots(capacity)
    assert slots - capacity == min(int(capacity * share), max(0, prefetch))


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_a_prefetch_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ConfigError, match="prefetch_share"):
        DispatcherConfig(prefetch_share=share)


class _Sent:
    """Outputs that keep what is written (no broker: the routing decisions alone)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, bytes | None]] = []
        self.headers: list[object] = []

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes,
        partition: int,
        headers: object = None,
        then: object = None,
    ) -> None:
        self.records.append((topic, partition, value))
        self.headers.append(headers)


def _effects(
    settings: Settings, owned: list[int], sent: _Sent, record_bytes: int = 1_000_000
) -> Effects:
    regs = Registrations()
    for agent in ("a1", "a2", "a3"):
        regs.apply(_claim(agent, {"a1": 0, "a2": 1, "a3": 2}[agent], 1))
    return Effects(
        outputs=sent,  # type: ignore[arg-type]
        codec=CODEC,
        topics=settings.topics,
        regs=regs,
        states={shard: ShardState(shard) for shard in owned},
        metrics=DispatcherMetrics(CollectorRegistry()),
        clock=lambda: 1,
        record_bytes=record_bytes,
    )


def test_a_group_cut_into_several_records_is_marked_grouped_on_its_last_one_only() -> None:
    """The agent hands a grouped type's tasks to its batch handler when it reads the marked
    record: on the last of the cut, so that the whole group has arrived by then."""
    settings = load_settings(topic_prefix="u.", shards=6)
    sent = _Sent()
    effects = _effects(settings, [0], sent, record_bytes=1_000)
    tracker = OffsetTracker(0)
    dispatches = []
    for index in range(8):
        origin = _origin(f"task-{index:02d}-" + "x" * 150, tracker, index)
        dispatches.append(Dispatch(task_to_job(origin.task, origin), "a1", 1, 1_000, 5, True))
    assert effects.carry_out(dispatches, {}) == []
    assert len(sent.records) > 2  # cut to fit 1,000 bytes
    sent_ids = [
        item.task.task_id
        for _, _, value in sent.records
        for item in CODEC.decode(value or b"", AssignmentBatch).assignments
    ]
    assert sent_ids == [dispatch.job.task_id for dispatch in dispatches]  # all, in order
    assert sent.headers[:-1] == [None] * (len(sent.records) - 1)
    assert sent.headers[-1] == [(GROUPED_HEADER, b"t")]


def test_an_agents_assignments_name_one_owned_reply_partition_and_results_go_home() -> None:
    settings = load_settings(topic_prefix="u.", shards=6)
    sent = _Sent()
    effects = _effects(settings, [1, 4], sent)
    tracker = OffsetTracker(0)
    dispatches = [
        Dispatch(task_to_job(origin.task, origin), agent, 1, 1_000, 5)
        for index, agent in enumerate(["a1", "a2", "a3"] * 4)
        for origin in [_origin(f"t{index}", tracker, index)]
    ]
    for index, dispatch in enumerate(dispatches):
        assert isinstance(dispatch.job.ref, Origin)
        dispatch.job.ref.shard = index % 6  # tasks of every shard
    assert effects.carry_out(dispatches, {}) == []
    batches = [CODEC.decode(value or b"", AssignmentBatch) for _, _, value in sent.records]
    assert len(batches) == 3  # one record per agent
    for batch in batches:
        replies = {item.reply_partition for item in batch.assignments}
        assert len(replies) == 1 and replies <= {1, 4}
        assert {item.dispatcher_shard for item in batch.assignments} == {
            dispatch.job.ref.shard  # type: ignore[union-attr]
            for dispatch in dispatches
            if dispatch.agent_id == batch.assignments[0].agent_id
        }
    sent.records.clear()
    result = TaskResult(
        task_id="t0",
        agent_id="a1",
        attempt=0,
        status=TaskStatus.SUCCEEDED,
        started_at=1,
        finished_at=2,
        shard=3,
    )
    effects.forward_results(3, [result])
    [(topic, partition, value)] = sent.records
    assert (topic, partition) == (settings.topics.results, 3)
    assert CODEC.decode(value or b"", ResultBatch).results == (result,)


class _Record:
    """What the engine reads of a consumed record."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._where = (topic, partition, offset)
        self._value = value
        self._headers = headers

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return int(self._where[1])

    def offset(self) -> int:
        return int(self._where[2])

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def _engine(settings: Settings, effects: Effects, sent: _Sent, core: Distributor) -> Engine:
    config = DispatcherConfig()
    return Engine(
        settings=settings,
        config=config,
        core=core,
        codec=CODEC,
        effects=effects,
        checkpointer=Checkpointer(
            sent,  # type: ignore[arg-type]
            codec=CODEC,
            changelog=settings.topics.state,
            dedupe_window=10,
            clock=lambda: 1,
        ),
        regs=Registrations(),
        slots=AgentSlots(settings.shards),
        states=effects._states,
        budget=TaskBudget(10, 5),
        metrics=DispatcherMetrics(CollectorRegistry()),
        clock=lambda: 1,
    )


def test_results_of_a_shard_owned_elsewhere_are_handed_on_to_it() -> None:
    settings = load_settings(topic_prefix="u.", shards=6)
    sent = _Sent()
    effects = _effects(settings, [1, 4], sent)
    core = Distributor(DispatcherConfig().distributor(settings))
    engine = _engine(settings, effects, sent, core)

    def result(task_id: str, shard: int | None) -> TaskResult:
        return TaskResult(
            task_id=task_id,
            agent_id="a1",
            attempt=0,
            status=TaskStatus.SUCCEEDED,
            started_at=1,
            finished_at=2,
            shard=shard,
        )

    batch = ResultBatch(results=(result("mine", 4), result("theirs", 3), result("old", None)))
    record = _Record(settings.topics.results, 1, 0, CODEC.encode(batch))

    async def handle() -> None:
        engine.on_batch([record])  # type: ignore[list-item]

    asyncio.run(handle())
    [(topic, partition, value)] = sent.records
    assert (topic, partition) == (settings.topics.results, 3)
    assert [r.task_id for r in CODEC.decode(value or b"", ResultBatch).results] == ["theirs"]


class _Recording(Distributor):
    """The real core, keeping every event the engine hands it."""

    seen: list[Event]

    def handle(self, events: list[Event], now_ms: int) -> list[Action]:
        self.seen = [*getattr(self, "seen", []), *events]
        return super().handle(events, now_ms)


def test_a_retry_keeps_how_often_its_task_was_preempted_through_its_tier() -> None:
    """The wire task has no room for the count: the retry record carries it in a header, and
    the task read back from the tier has it again (``preempt_max_per_task`` holds)."""
    settings = load_settings(topic_prefix="u.", shards=6)
    sent = _Sent()
    effects = _effects(settings, [0], sent)
    tracker = OffsetTracker(0)
    for task_id, preempted in (("stopped-once", 1), ("never-stopped", 0)):
        origin = _origin(task_id, tracker, 0)
        job = task_to_job(origin.task_at(1), origin, preempted=preempted)
        assert effects.carry_out([Retry(job, 0, 5_000, "boom")], {}) == []
    core = _Recording(DispatcherConfig().distributor(settings))
    engine = _engine(settings, effects, sent, core)
    records = [
        _Record(topic, partition, offset, value or b"", headers)  # type: ignore[arg-type]
        for offset, ((topic, partition, value), headers) in enumerate(
            zip(sent.records, sent.headers, strict=True)
        )
    ]
    assert [topic for topic, _, _ in sent.records] == [settings.topics.retry(0)] * 2

    async def handle() -> None:
        engine.on_batch(records)  # type: ignore[arg-type]

    asyncio.run(handle())
    arrived = {e.job.task_id: e for e in core.seen if isinstance(e, TaskArrived)}
    assert arrived["stopped-once"].job.preempted == 1
    assert arrived["never-stopped"].job.preempted == 0
    assert {e.due_ms for e in arrived.values()} == {5_000}
    assert arrived["stopped-once"].job.attempt == 1


def test_the_task_budget_grants_up_to_max_held_and_resumes_at_its_mark() -> None:
    budget = TaskBudget(max_held=10, resume_at=4)
    assert budget.take(6) == (6, False)
    assert budget.take(6) == (4, True)  # 10 on their way or held: the budget is used up
    assert budget.take(1) == (0, True)
    assert not budget.may_resume()
    budget.handled(10, held=10)  # the loop took them all in
    assert budget.take(1) == (0, True) and not budget.may_resume()
    budget.handled(0, held=5)
    assert not budget.may_resume()
    budget.handled(0, held=4)
    assert budget.may_resume()
    assert budget.take(9) == (6, True)
