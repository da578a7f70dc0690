"""This instance's share of each agent, as the engine keeps it: each heartbeat's slots
divided by the shards it owns, and every known agent re-counted when the shards change."""

from __future__ import annotations

from streams.adapters.dispatcher.slots import AgentSlots
from streams.core.events import SlotsResized
from streams.core.shares import share


def test_a_heartbeat_gets_the_share_of_the_shards_owned_and_a_rebalance_recounts_all() -> None:
    slots = AgentSlots(shards=6)
    assert slots.own([0, 1, 2, 3, 4, 5]) == []  # nobody known yet
    assert slots.announced("a", partition=0, capacity=7, slots=8) == 8  # every shard: all
    assert slots.announced("b", partition=1, capacity=3, slots=3) == 3
    assert (slots.capacity("a"), slots.capacity("b"), slots.capacity("c")) == (7, 3, None)
    resized = slots.own([0, 1, 2])
    assert resized == [
        SlotsResized("a", share(0, 8, [0, 1, 2], 6)),
        SlotsResized("b", share(1, 3, [0, 1, 2], 6)),
    ]
    assert sum(event.capacity for event in resized) < 11  # the other half is another's
    assert slots.own([0, 1, 2]) == []  # no change, nothing to say
    assert [event.capacity for event in slots.own([])] == [0, 0]  # every shard revoked


def test_a_forgotten_agent_is_not_recounted() -> None:
    slots = AgentSlots(shards=2)
    slots.announced("a", partition=0, capacity=4, slots=4)
    slots.forget("a")
    slots.forget("never-seen")
    assert slots.own([0]) == []
    assert slots.capacity("a") is None
