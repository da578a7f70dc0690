"""Agents' slots divided among dispatcher shards: instances owning disjoint shards never
over-commit an agent, one instance owning every shard sees every agent whole, and a share that
shrinks stops new dispatches at once."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from streams.core.actions import Dispatch, ResultStatus
from streams.core.agents import Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import (
    Event,
    HeartbeatReceived,
    ResultReported,
    SlotsResized,
    TaskArrived,
)
from streams.core.model import Job
from streams.core.shares import shard_slots, share

PARTITIONS = st.integers(0, 10_000)


def _beat(agent: str, capacity: int) -> HeartbeatReceived:
    return HeartbeatReceived(
        Heartbeat(agent, capacity, frozenset(), None, 1.0, 0.0, "READY", 0, incarnation=1)
    )


@given(agent=PARTITIONS, slots=st.integers(0, 100), shards=st.integers(1, 64))
def test_the_shards_hold_every_slot_and_differ_by_at_most_one(
    agent: int, slots: int, shards: int
) -> None:
    counts = shard_slots(agent, slots, shards)
    assert len(counts) == shards and sum(counts) == slots
    assert max(counts) - min(counts) <= 1
    assert counts == shard_slots(agent, slots, shards)  # the same in every process


@given(
    agent=PARTITIONS,
    slots=st.integers(0, 100),
    shards=st.integers(1, 16),
    owners=st.data(),
)
def test_instances_with_disjoint_shards_share_no_more_than_the_agent_has(
    agent: int, slots: int, shards: int, owners: st.DataObject
) -> None:
    """Whatever the group's assignment, the shares add up to the agent's slots exactly when
    every shard is owned, and to less when some shard is not (between revoke and assign)."""
    owner_of = owners.draw(st.lists(st.integers(-1, 3), min_size=shards, max_size=shards))
    instances = {owner for owner in owner_of if owner >= 0}
    total = sum(
        share(agent, slots, [s for s, o in enumerate(owner_of) if o == instance], shards)
        for instance in instances
    )
    if -1 in owner_of:
        assert total <= slots
    else:
        assert total == slots
    assert share(agent, slots, range(shards), shards) == slots


@given(agent=PARTITIONS, instances=st.integers(1, 6), per=st.integers(1, 4), data=st.data())
def test_instances_owning_equal_runs_of_shards_each_get_a_share_of_an_agent_as_big_as_the_group(
    agent: int, instances: int, per: int, data: st.DataObject
) -> None:
    """What ``range`` assignment gives (a contiguous run of shards each): an agent with at
    least one slot per instance is routed to by every instance."""
    shards = instances * per
    slots = data.draw(st.integers(instances, 4 * shards))
    runs = [range(index * per, (index + 1) * per) for index in range(instances)]
    assert all(share(agent, slots, run, shards) > 0 for run in runs)


@given(slots=st.integers(1, 40), shards=st.integers(1, 24), agents=st.integers(1, 300))
def test_a_fleet_on_partitions_0_to_n_gets_its_left_over_slots_dealt_evenly(
    slots: int, shards: int, agents: int
) -> None:
    """Agents of one size on partitions 0..n-1: every shard's total is within one agent's
    left-overs of any other's (a hash of the ids would scatter them)."""
    totals = [0] * shards
    for partition in range(agents):
        for shard, count in enumerate(shard_slots(partition, slots, shards)):
            totals[shard] += count
    assert sum(totals) == slots * agents
    assert max(totals) - min(totals) <= max(1, slots % shards)


@given(
    capacities=st.lists(st.integers(1, 8), min_size=1, max_size=5),
    shards=st.integers(1, 8),
    owner_of=st.data(),
    tasks=st.lists(st.integers(0, 63), max_size=80),
)
def test_two_cores_owning_disjoint_shards_never_overcommit_an_agent(
    capacities: list[int], shards: int, owner_of: st.DataObject, tasks: list[int]
) -> None:
    """Two dispatcher instances, each a core fed its share of every agent and the tasks of its
    own shards, route to the same agents: no agent gets more than its slots in all."""
    owners = owner_of.draw(st.lists(st.integers(0, 1), min_size=shards, max_size=shards))
    agents = {f"a{index}": capacity for index, capacity in enumerate(capacities)}
    partition = {agent: index for index, agent in enumerate(agents)}
    dispatched: Counter[str] = Counter()
    for instance in (0, 1):
        owned = [shard for shard, owner in enumerate(owners) if owner == instance]
        events: list[Event] = [
            _beat(agent, share(partition[agent], slots, owned, shards))
            for agent, slots in agents.items()
        ]
        events += [
            TaskArrived(Job(f"t{index}", 1, 0))
            for index, shard in enumerate(tasks)
            if shard % shards in owned
        ]
        core = Distributor(DistributorConfig())
        for action in core.handle(events, 0):
            if isinstance(action, Dispatch):
                dispatched[action.agent_id] += 1
    for agent, count in dispatched.items():
        assert count <= agents[agent]
    if len(set(owners)) == 1:  # one instance owns every shard: every agent whole
        assert sum(dispatched.values()) == min(len(tasks), sum(agents.values()))


def test_a_shrunk_share_stops_new_dispatches_until_the_agent_is_below_it() -> None:
    core = Distributor(DistributorConfig())
    core.handle([_beat("a", 4)], 0)
    first = core.handle([TaskArrived(Job(f"t{index}", 1, 0)) for index in range(4)], 1)
    assert len([a for a in first if isinstance(a, Dispatch)]) == 4
    assert core.handle([SlotsResized("a", 2), TaskArrived(Job("u", 1, 0))], 2) == []
    finished = [ResultReported(f"t{index}", "a", 0, ResultStatus.SUCCEEDED) for index in range(2)]
    assert not [a for a in core.handle(finished, 3) if isinstance(a, Dispatch)]  # 2 of 2 held
    third = core.handle([ResultReported("t2", "a", 0, ResultStatus.SUCCEEDED)], 4)
    assert [a.job.task_id for a in third if isinstance(a, Dispatch)] == ["u"]


def test_resizing_an_unknown_agent_changes_nothing() -> None:
    core = Distributor(DistributorConfig())
    assert core.handle([SlotsResized("ghost", 3), TaskArrived(Job("t", 1, 0))], 0) == []
    assert not core.agents()
