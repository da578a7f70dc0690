"""Dispatcher shards in the simulator: which shard owns a task, which slots each shard sees.

A scenario with ``dispatcher_shards = K`` runs K independent distributors (K dispatcher
instances, each with its own scheduler and router, each the only owner of its tasks). This
module is the plan of such a run, fixed before it starts:

- **Tasks.** A task belongs to shard ``murmur2(key) & 0x7fffffff mod K``, ``key`` being its
  affinity key, else its task id: exactly the partition the producer writes it to (Kafka's
  default partitioner, which ``streams/adapters/client.py`` uses), so with ``K`` equal to the
  task topics' partitions a simulated shard holds what one live partition holds. Retries and
  results stay with the task's shard, as live.
- **Slots.** No agent may run more than its slots summed over the shards, so each shard is
  given a fixed share of each agent, by one of two models (``sharding``):

  ``split-slots``: every agent's slots (``capacity + prefetch``, what it announces) are divided
  among all K shards: ``slots // K`` each, and the ``slots mod K`` left over go to the next
  shards in turn, a cursor running on through the fleet (agent after agent), so the shards'
  totals differ by at most one slot. An agent with fewer slots than shards gives some shards
  0 slots: they never see it (fragmentation: each slot is a pool of one).

  ``own-agents``: each agent is served by exactly one shard, all its slots with it, the agents
  dealt in fleet order to the shard with the fewest slots so far (ties: the lower shard), so
  the totals are as even as the agents' sizes allow. An agent's runs then stay with one
  instance, which is the live model when one instance at a time owns an agent's
  assignments.

  Either way a shard's share of an agent is a hard budget: the shard counts in flight against
  it, so the sum over shards never exceeds the agent's slots (tested). With one shard both
  models give the whole agent to it: today's behaviour.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from streams.core.model import Job
from streams.errors import ConfigError

SPLIT_SLOTS = "split-slots"
OWN_AGENTS = "own-agents"
SHARDINGS: tuple[str, ...] = (SPLIT_SLOTS, OWN_AGENTS)

Share = tuple[int, int]
"""(shard, slots): the slots of one agent one shard may fill (always > 0)."""

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
    """What the producer keys a task by: its affinity key, else its id."""
    return job.affinity_key if job.affinity_key is not None else job.task_id


def split_slots(slots: Sequence[int], shards: int) -> list[tuple[Share, ...]]:
    """Each agent's slots over every shard; remainders dealt in turn across the fleet."""
    cursor = 0
    plan: list[tuple[Share, ...]] = []
    for total in slots:
        base, extra = divmod(total, shards)
        counts = [base] * shards
        for step in range(extra):
            counts[(cursor + step) % shards] += 1
        cursor = (cursor + extra) % shards
        plan.append(tuple((shard, count) for shard, count in enumerate(counts) if count))
    return plan


def own_agents(slots: Sequence[int], shards: int) -> list[tuple[Share, ...]]:
    """Each agent whole to one shard: the one with the fewest slots so far."""
    totals = [(0, shard) for shard in range(shards)]
    plan: list[tuple[Share, ...]] = []
    for total in slots:
        held, shard = heapq.heappop(totals)
        plan.append(((shard, total),))
        heapq.heappush(totals, (held + total, shard))
    return plan


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """The shards of one run: how many, and each agent's shares (in fleet order)."""

    shards: int
    sharding: str
    shares: tuple[tuple[Share, ...], ...]

    @classmethod
    def of(cls, slots: Sequence[int], shards: int, sharding: str) -> ShardPlan:
        """The plan for agents announcing ``slots`` each (fleet order)."""
        if shards < 1:
            raise ConfigError(f"dispatcher_shards must be >= 1, got {shards}")
        if sharding == SPLIT_SLOTS:
            return cls(shards, sharding, tuple(split_slots(slots, shards)))
        if sharding == OWN_AGENTS:
            return cls(shards, sharding, tuple(own_agents(slots, shards)))
        raise ConfigError(f"sharding: unknown value {sharding!r}; valid: {', '.join(SHARDINGS)}")

    def shard_of(self, job: Job) -> int:
        """The shard that owns ``job`` (0 when there is one)."""
        return partition_of(task_key(job), self.shards) if self.shards > 1 else 0

    def totals(self) -> list[int]:
        """Slots each shard sees, summed over the fleet."""
        totals = [0] * self.shards
        for shares in self.shares:
            for shard, slots in shares:
                totals[shard] += slots
        return totals
