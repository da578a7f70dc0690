"""An agent's slots divided among the dispatcher's shards, so that instances never over-commit it.

The task topics are split into shards (their partitions); a consumer group gives each dispatcher
instance some of them. Every instance may route to every agent, so each agent's slots (its
capacity plus prefetch, as the dispatcher counts them) are divided among the shards, and an
instance uses the slots of the shards it owns, pooled:

- shard ``k`` of ``S`` holds ``slots // S`` of the agent's slots, and the ``r = slots mod S``
  left over go one each to ``r`` shards spaced ``S / r`` apart, from the shard numbered like
  the agent's ``dispatch`` partition (mod ``S``). Agents hold distinct partitions, numbered
  from 0, so the left-overs of a fleet are dealt evenly over the shards, as by a cursor (a hash
  of the agent's id would deal them at random: with one shard per instance, some instances
  would get far fewer slots than others). Since ``range`` assignment gives each instance a
  contiguous run of shards, an agent with at least as many slots as there are instances gives
  every instance a share when they own equal numbers of shards;
- an instance's share is the sum over the shards it owns.

Shards are owned by one instance at a time, so the shares of all instances add up to at most
the agent's slots, and to exactly its slots when every shard is owned: one instance owning
every shard sees every agent whole. Each instance computes its share alone, from its own shards
and the shard count: no coordination between instances is needed.

The price is fragmentation: an agent with fewer slots than shards gives some shards nothing,
and an instance whose shards hold none of an agent's slots never routes to it.
"""

from __future__ import annotations

from collections.abc import Collection

from streams.errors import CoreError


def shard_slots(partition: int, slots: int, shards: int) -> list[int]:
    """How many of the ``slots`` of the agent on ``dispatch`` partition ``partition`` each of
    ``shards`` shards holds (summing to ``slots``)."""
    if shards < 1:
        raise CoreError(f"shards must be >= 1, got {shards}")
    if slots < 0:
        raise CoreError(f"slots must be >= 0, got {slots}")
    base, extra = divmod(slots, shards)
    counts = [base] * shards
    start = partition % shards
    for step in range(extra):  # spread evenly: instances own contiguous ranges of shards
        counts[(start + step * shards // extra) % shards] += 1
    return counts


def share(partition: int, slots: int, owned: Collection[int], shards: int) -> int:
    """The slots of the agent on ``dispatch`` partition ``partition`` an instance owning the
    shards ``owned`` (of ``shards``) may fill; all of them when it owns every shard."""
    mine = {shard for shard in owned if 0 <= shard < shards}
    if len(mine) == shards:
        return slots
    counts = shard_slots(partition, slots, shards)
    return sum(counts[shard] for shard in mine)
