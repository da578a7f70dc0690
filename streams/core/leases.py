"""The in-flight table: which task runs where, under which lease, as facts keyed by task id.

Loads are derived from the facts, never kept as ``+1``/``-1`` counters (which drift when
input is replayed after a crash): an agent's ``AgentInfo.in_flight`` is set to the number of
leases held on it after every change. Every lease leaves the table exactly once, by
``finish``, ``expired`` or ``lost_with``; each of these removes what it returns, so a
duplicate result, a second expiry pass or a second failover returns nothing.

Lease expiry uses a heap of ``(expires_ms, task_id)`` with lazy deletion: finishing or renewing
a lease leaves its old entry behind, skipped when it surfaces and purged when stale entries
outnumber live ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from streams.core.agents import AgentRegistry, Transition
from streams.core.model import AgentState, Job
from streams.errors import CoreError


@dataclass(frozen=True, slots=True)
class Lease:
    """One attempt of a task, held by one agent (of one epoch) until ``expires_ms``."""

    job: Job
    agent_id: str
    attempt: int
    epoch: int
    """The agent's epoch at dispatch: the agent skips assignments of an older epoch."""
    dispatched_ms: int
    expires_ms: int
    """The lease has run out at this time (``expired(now_ms)`` returns it once ``now_ms`` >= it)."""
    incarnation: int = 0
    """The agent's incarnation at dispatch (``Heartbeat.incarnation``): its assignment carries
    it, and a recovered lease is kept only if the agent comes back as the same incarnation."""

    @property
    def task_id(self) -> str:
        return self.job.task_id


class InFlight:
    """Tasks dispatched and not yet finished, with their leases; keeps agents' ``in_flight``."""

    def __init__(self, registry: AgentRegistry) -> None:
        self._registry = registry
        self._leases: dict[str, Lease] = {}
        self._by_agent: dict[str, dict[str, Lease]] = {}
        self._by_priority: dict[int, dict[str, None]] = {}
        """Level -> ids of the tasks of that level in flight, in order of dispatch (to find a
        run to preempt without looking at every lease)."""
        self._expiries: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._leases

    def __iter__(self) -> Iterator[Lease]:
        """Every lease held, in order of dispatch (for status views and checkpoints)."""
        return iter(list(self._leases.values()))

    def get(self, task_id: str) -> Lease | None:
        return self._leases.get(task_id)

    def of_agent(self, agent_id: str) -> list[Lease]:
        """The agent's leases, in order of dispatch."""
        return list(self._by_agent.get(agent_id, {}).values())

    def youngest_of_priority(self, level: int) -> Iterator[Lease]:
        """The leases of tasks of ``level``, the last dispatched first."""
        leases = self._leases
        return (leases[task_id] for task_id in reversed(self._by_priority.get(level, {})))

    def count_of_priority(self, level: int) -> int:
        return len(self._by_priority.get(level, ()))

    def assign(
        self, job: Job, agent_id: str, now_ms: int, lease_ms: int, *, overbook: bool = False
    ) -> Lease:
        """Record that attempt ``job.attempt`` of ``job`` went to a free slot of a READY agent.

        Raises ``CoreError`` if the task is already in flight, the agent is unknown, not READY or
        full, or ``lease_ms`` is not positive: each would be a scheduler bug. ``overbook`` lets a
        push baseline queue tasks at an agent beyond its slots (the agent keeps a local FIFO).
        """
        if job.task_id in self._leases:
            raise CoreError(f"task {job.task_id!r} is already in flight")
        if lease_ms <= 0:
            raise CoreError(f"lease_ms must be > 0, got {lease_ms}")
        info = self._registry.get(agent_id)
        if info is None:
            raise CoreError(f"unknown agent {agent_id!r}")
        if info.state is not AgentState.READY or (info.free_slots <= 0 and not overbook):
            raise CoreError(f"agent {agent_id!r} takes no work ({info.state.value}, full or not)")
        registry = self._registry
        lease = Lease(
            job,
            agent_id,
            job.attempt,
            registry.epoch(agent_id),
            now_ms,
            now_ms + lease_ms,
            registry.incarnation(agent_id),
        )
        self._add(lease)
        return lease

    def restore(self, lease: Lease) -> None:
        """Put back a lease read from durable state after a restart (no health or slot check).

        Leases of agents that are DOWN by then must be handed back by the caller (``lost_with``).
        """
        if lease.task_id in self._leases:
            raise CoreError(f"task {lease.task_id!r} is already in flight")
        if self._registry.get(lease.agent_id) is None:
            raise CoreError(f"unknown agent {lease.agent_id!r}")
        self._add(lease)

    def finish(self, task_id: str, attempt: int) -> Lease | None:
        """The result of ``attempt`` arrived: remove and return its lease.

        ``None`` (and nothing changes) when the task is not in flight or is in flight under
        another attempt: a duplicate or a late result after a failover.
        """
        lease = self._leases.get(task_id)
        if lease is None or lease.attempt != attempt:
            return None
        self._remove(lease)
        return lease

    def renew(self, task_id: str, now_ms: int, lease_ms: int) -> None:
        """Extend a lease to ``now_ms + lease_ms`` (never shortens it); unknown task: no-op."""
        if lease_ms <= 0:
            raise CoreError(f"lease_ms must be > 0, got {lease_ms}")
        lease = self._leases.get(task_id)
        if lease is None or now_ms + lease_ms <= lease.expires_ms:
            return
        renewed = replace(lease, expires_ms=now_ms + lease_ms)
        self._leases[task_id] = renewed
        self._by_agent[lease.agent_id][task_id] = renewed
        self._push(renewed)

    def extend_all(self, until_ms: int) -> None:
        """Every lease runs at least until ``until_ms`` (after an outage in which no result
        could arrive)."""
        for lease in list(self._leases.values()):
            if lease.expires_ms < until_ms:
                renewed = replace(lease, expires_ms=until_ms)
                self._leases[lease.task_id] = renewed
                self._by_agent[lease.agent_id][lease.task_id] = renewed
                self._push(renewed)

    def expired(self, now_ms: int) -> list[Lease]:
        """Remove and return the leases that have run out by ``now_ms``, earliest first.

        Requeueing them (with ``attempt + 1``) is the caller's job.
        """
        out: list[Lease] = []
        while self._expiries and self._expiries[0][0] <= now_ms:
            expires_ms, task_id = heapq.heappop(self._expiries)
            lease = self._leases.get(task_id)
            if lease is not None and lease.expires_ms == expires_ms:
                self._remove(lease)
                out.append(lease)
        return out

    def lost_with(self, agent_id: str) -> list[Lease]:
        """Remove and return every lease of an agent that went DOWN, in order of dispatch."""
        leases = self.of_agent(agent_id)
        for lease in leases:
            self._remove(lease)
        return leases

    def hand_back(self, transitions: Iterable[Transition]) -> list[Lease]:
        """The leases lost with every agent that one of ``transitions`` took DOWN."""
        lost: list[Lease] = []
        for transition in transitions:
            if transition.after is AgentState.DOWN:
                lost += self.lost_with(transition.agent_id)
        return lost

    def next_expiry_ms(self) -> int | None:
        """The earliest ``expires_ms`` of the leases held, or ``None`` when there are none."""
        while self._expiries:
            expires_ms, task_id = self._expiries[0]
            lease = self._leases.get(task_id)
            if lease is not None and lease.expires_ms == expires_ms:
                return expires_ms
            heapq.heappop(self._expiries)
        return None

    def _add(self, lease: Lease) -> None:
        self._leases[lease.task_id] = lease
        self._by_agent.setdefault(lease.agent_id, {})[lease.task_id] = lease
        self._by_priority.setdefault(lease.job.priority, {})[lease.task_id] = None
        self._push(lease)
        self._sync(lease.agent_id)

    def _remove(self, lease: Lease) -> None:
        del self._leases[lease.task_id]
        held = self._by_agent[lease.agent_id]
        del held[lease.task_id]
        if not held:
            del self._by_agent[lease.agent_id]
        level = self._by_priority[lease.job.priority]
        del level[lease.task_id]
        if not level:
            del self._by_priority[lease.job.priority]
        self._sync(lease.agent_id)

    def _sync(self, agent_id: str) -> None:
        """Derive the agent's load from the facts: the number of leases it holds."""
        self._registry.set_in_flight(agent_id, len(self._by_agent.get(agent_id, ())))

    def _push(self, lease: Lease) -> None:
        heapq.heappush(self._expiries, (lease.expires_ms, lease.task_id))
        if len(self._expiries) > 2 * len(self._leases) + 64:
            self._expiries = [(held.expires_ms, tid) for tid, held in self._leases.items()]
            heapq.heapify(self._expiries)
