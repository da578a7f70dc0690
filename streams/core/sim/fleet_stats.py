"""One set of statistics for the K distributors of a sharded run.

Each distributor reports what it sees to its :class:`ShardStatistics`, which forwards
everything to the one shared :class:`Statistics` of the run, so queue times, deadlines and
slot-time are counted once over the whole fleet, the same way as for one distributor. The one
exception is an agent's capacity: a shard sees only its share, so the view keeps every shard's
share and reports the agent's sum (what the agent really has).
"""

from __future__ import annotations

from streams.core.model import DeadLetterReason, Job
from streams.core.stats import Statistics, Summary


class FleetCapacity:
    """Each agent's capacity as every shard last reported it; their sum is the agent's."""

    __slots__ = ("_shards", "_shares")

    def __init__(self, shards: int) -> None:
        self._shards = shards
        self._shares: dict[str, list[int]] = {}

    def report(self, agent_id: str, shard: int, capacity: int) -> int:
        """Note ``shard``'s share of ``agent_id``; return the agent's new total."""
        shares = self._shares.get(agent_id)
        if shares is None:
            shares = self._shares[agent_id] = [0] * self._shards
        shares[shard] = capacity
        return sum(shares)


class ShardStatistics(Statistics):
    """A shard's statistics: a view forwarding to the run's shared ones (keeps none itself)."""

    def __init__(self, shared: Statistics, capacity: FleetCapacity, shard: int) -> None:
        # No super().__init__(): every figure lives in ``shared``.
        self._shared = shared
        self._capacity = capacity
        self._shard = shard

    def agent_capacity(self, agent_id: str, capacity: int, now_ms: int) -> None:
        total = self._capacity.report(agent_id, self._shard, capacity)
        self._shared.agent_capacity(agent_id, total, now_ms)

    def task_received(self, job: Job, now_ms: int) -> None:
        self._shared.task_received(job, now_ms)

    def task_dispatched(
        self,
        job: Job,
        agent_id: str,
        now_ms: int,
        *,
        inversion: bool = False,
        affinity_hit: bool | None = None,
    ) -> None:
        self._shared.task_dispatched(
            job, agent_id, now_ms, inversion=inversion, affinity_hit=affinity_hit
        )

    def task_started(self, job: Job, agent_id: str, now_ms: int) -> None:
        self._shared.task_started(job, agent_id, now_ms)

    def task_finished(self, job: Job, agent_id: str, now_ms: int, status: str) -> None:
        self._shared.task_finished(job, agent_id, now_ms, status)

    def task_dead_lettered(self, job: Job, reason: DeadLetterReason, now_ms: int) -> None:
        self._shared.task_dead_lettered(job, reason, now_ms)

    def task_withdrawn(self, task_id: str, now_ms: int) -> None:
        self._shared.task_withdrawn(task_id, now_ms)

    def summary(self, now_ms: int) -> Summary:
        return self._shared.summary(now_ms)
