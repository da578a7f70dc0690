"""Dispatcher shards and instances in the simulator: who owns a task, whose slots are whose.

The task topics have ``dispatcher_shards = K`` partitions (shards); ``dispatcher_instances =
N`` instances (default: one per shard) share them as a consumer group, Kafka's range assignor
giving each a contiguous run of shards (``K // N`` each, the first ``K mod N`` one more). Each
instance runs one distributor (one scheduler, one router) for all its shards, as the live
dispatcher does, so the simulator runs N distributors side by side. This module is the plan of
such a run, fixed before it starts:

- **Tasks.** A task belongs to shard ``murmur2(key) & 0x7fffffff mod K``, ``key`` being its
  affinity key, else its task id: exactly the partition the producer writes it to (Kafka's
  default partitioner, which ``streams/adapters/client.py`` uses), and so to that shard's
  instance. Its retries and results stay with it, as live.
- **Slots.** No agent may run more than its slots summed over the instances, so each instance
  is given a fixed share of each agent, by one of three models (``sharding``):

  ``split-slots``: the live rule (``streams/core/shares.py``): every agent's slots (what it
  announces: ``capacity + prefetch``) are divided among the K shards, ``slots // K`` each, and
  the ``slots mod K`` left over spread over the shards from the shard numbered like the agent's
  ``dispatch`` partition (here its place in the fleet, as agents claim partitions 0, 1, ...);
  an instance's share is the sum over its shards. Agents of one size deal their remainders
  exactly evenly; a mixed fleet nearly so.

  ``split-slots-even``: the same division, but the remainders dealt in turn, a cursor running on
  through the fleet (agent after agent), so the shards' totals differ by at most one slot.

  ``own-agents``: each agent is served by exactly one instance, all its slots with it, the
  agents dealt in fleet order to the instance with the fewest slots so far (ties: the lower
  one), so the totals are as even as the agents' sizes allow.

  Either way an instance's share of an agent is a hard budget: it counts its tasks in flight
  against it, so the sum over instances never exceeds the agent's slots (tested). An agent
  whose share in an instance is 0 slots is not seen there at all (fragmentation). With one
  instance every model gives it every agent whole: today's behaviour.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from streams.core.model import Job
from streams.core.shares import shard_slots
from streams.errors import ConfigError

SPLIT_SLOTS = "split-slots"
SPLIT_SLOTS_EVEN = "split-slots-even"
OWN_AGENTS = "own-agents"
SHARDINGS: tuple[str, ...] = (SPLIT_SLOTS, SPLIT_SLOTS_EVEN, OWN_AGENTS)

Share = tuple[int, int]
"""(instance, slots): the slots of one agent one instance may fill (always > 0)."""

_MASK = 0xFFFFFFFF
_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's ``Utils.murmur2``), as an unsigned 32-bit value."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    tail = length & ~3
    for index in range(0, tail, 4):
        k = int.from_bytes(data[index : index + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``: ``positive(murmur2) mod n``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def task_key(job: Job) -> str:
    """What the producer keys a task by: its ordering key, else its affinity key, else its id
    (as ``Task.kafka_key``)."""
    ordering_key = job.ordering_key
    if ordering_key is not None:
        return ordering_key
    return job.affinity_key if job.affinity_key is not None else job.task_id


def range_owner(shard: int, shards: int, instances: int) -> int:
    """The instance Kafka's range assignor gives ``shard``: contiguous runs, the first
    ``shards mod instances`` instances one shard more."""
    per, extra = divmod(shards, instances)
    wide = extra * (per + 1)  # shards held by the instances with one more
    return shard // (per + 1) if shard < wide else extra + (shard - wide) // per


def split_even(slots: Sequence[int], shards: int) -> list[list[int]]:
    """Each agent's slots per shard, remainders dealt in turn across the fleet."""
    cursor = 0
    plan = []
    for total in slots:
        base, extra = divmod(total, shards)
        counts = [base] * shards
        for step in range(extra):
            counts[(cursor + step) % shards] += 1
        cursor = (cursor + extra) % shards
        plan.append(counts)
    return plan


def split_live(agents: Sequence[tuple[str, int]], shards: int) -> list[list[int]]:
    """Each agent's slots per shard by the live rule (``streams/core/shares.py``), the agents
    holding ``dispatch`` partitions 0, 1, ... in fleet order."""
    return [shard_slots(partition, slots, shards) for partition, (_, slots) in enumerate(agents)]


def own_agents(slots: Sequence[int], instances: int) -> list[tuple[Share, ...]]:
    """Each agent whole to one instance: the one with the fewest slots so far."""
    totals = [(0, instance) for instance in range(instances)]
    plan: list[tuple[Share, ...]] = []
    for total in slots:
        held, instance = heapq.heappop(totals)
        plan.append(((instance, total),))
        heapq.heappush(totals, (held + total, instance))
    return plan


def _by_instance(counts: list[int], owners: Sequence[int], instances: int) -> tuple[Share, ...]:
    """Per-shard counts summed per owning instance; instances with none left out."""
    pooled = [0] * instances
    for shard, count in enumerate(counts):
        pooled[owners[shard]] += count
    return tuple((instance, count) for instance, count in enumerate(pooled) if count)


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """The shards and instances of one run, and each agent's shares (in fleet order)."""

    shards: int
    instances: int
    sharding: str
    shares: tuple[tuple[Share, ...], ...]

    @classmethod
    def of(
        cls, agents: Sequence[tuple[str, int]], shards: int, sharding: str, instances: int = 0
    ) -> ShardPlan:
        """The plan for ``agents`` (id, slots announced; fleet order); ``instances`` 0: one
        per shard."""
        if shards < 1:
            raise ConfigError(f"dispatcher_shards must be >= 1, got {shards}")
        count = instances or shards
        if not 1 <= count <= shards:
            raise ConfigError(f"dispatcher_instances must be in 1..{shards}, got {instances}")
        slots = [total for _, total in agents]
        owners = [range_owner(shard, shards, count) for shard in range(shards)]
        if sharding == OWN_AGENTS:
            return cls(shards, count, sharding, tuple(own_agents(slots, count)))
        if sharding == SPLIT_SLOTS:
            per_shard = split_live(agents, shards)
        elif sharding == SPLIT_SLOTS_EVEN:
            per_shard = split_even(slots, shards)
        else:
            valid = ", ".join(SHARDINGS)
            raise ConfigError(f"sharding: unknown value {sharding!r}; valid: {valid}")
        shares = tuple(_by_instance(counts, owners, count) for counts in per_shard)
        return cls(shards, count, sharding, shares)

    def instance_of(self, job: Job) -> int:
        """The instance that owns ``job``: its shard's owner (0 when there is one)."""
        if self.instances == 1:
            return 0
        return range_owner(partition_of(task_key(job), self.shards), self.shards, self.instances)

    def totals(self) -> list[int]:
        """Slots each instance sees, summed over the fleet."""
        totals = [0] * self.instances
        for shares in self.shares:
            for instance, slots in shares:
                totals[instance] += slots
        return totals
