"""Who owns which dispatch partition, as read from the registry topic (pure, no I/O).

Invariants, from the registry's single partition (one total order of every claim):

1. An agent's current claim is its last record; a partition is *held* by an agent whose last
   record claims it ACTIVE and was renewed less than the registration TTL ago.
2. A new claim of a partition carries an epoch above every epoch ever recorded for it, so the
   assignments of any earlier owner are recognisable as stale.
3. Of two claims of one partition, the one recorded first wins: a claimant that finds another
   agent's ACTIVE claim of its partition, with an epoch at least its own, recorded before its
   own record, has lost and claims again.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from streams.wire.records import AgentRegistration, RegistrationStatus


def holds(record: AgentRegistration, *, now_ms: int, ttl_ms: int) -> bool:
    """Whether ``record`` (an agent's last) still holds its partition at ``now_ms``."""
    return record.status is RegistrationStatus.ACTIVE and now_ms - record.renewed_at < ttl_ms


def beats(record: AgentRegistration, own: AgentRegistration) -> bool:
    """Whether ``record``, recorded before ``own``, wins ``own``'s partition (invariant 3)."""
    return (
        record.agent_id != own.agent_id
        and record.partition == own.partition
        and record.status is RegistrationStatus.ACTIVE
        and record.epoch >= own.epoch
    )


@dataclass(slots=True)
class RegistryView:
    """The last registration of each agent and the highest epoch of each partition."""

    last: dict[str, AgentRegistration] = field(default_factory=dict)
    top_epochs: dict[int, int] = field(default_factory=dict)

    def apply(self, record: AgentRegistration) -> None:
        """Take in the next record of the registry topic."""
        self.last[record.agent_id] = record
        self.top_epochs[record.partition] = max(
            record.epoch, self.top_epochs.get(record.partition, 0)
        )

    def next_epoch(self, partition: int) -> int:
        """The epoch of a new claim of ``partition``: 1 + the highest recorded (invariant 2)."""
        return self.top_epochs.get(partition, 0) + 1

    def choose(
        self, agent_id: str, *, partitions: int, now_ms: int, ttl_ms: int, spread: bool = False
    ) -> int | None:
        """The partition ``agent_id`` should claim among ``0 .. partitions-1``; None if all held.

        Its own last partition first (a restart), unless another agent holds it now; else the
        lowest partition nobody else holds or, with ``spread`` (after a lost race: others are
        starting too), the first free one from its home (:func:`home_partition`) upward, so
        agents started together stop racing for the same partition.
        """
        held = {
            record.partition
            for other, record in self.last.items()
            if other != agent_id and holds(record, now_ms=now_ms, ttl_ms=ttl_ms)
        }
        own = self.last.get(agent_id)
        if own is not None and own.partition < partitions and own.partition not in held:
            return own.partition
        start = home_partition(agent_id, partitions) if spread else 0
        ring = [*range(start, partitions), *range(start)]
        return next((partition for partition in ring if partition not in held), None)


def home_partition(agent_id: str, partitions: int) -> int:
    """Where an agent looks first for a free partition once spreading: a stable hash of its id."""
    return zlib.crc32(agent_id.encode()) % partitions
