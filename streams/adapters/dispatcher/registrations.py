"""Who owns which dispatch partition now, from the registry topic (pure, no I/O).

The registry's single partition orders every claim (docs/protocol.md). An agent's current
claim is its last record; its assignments go to that partition with that epoch. A claim stops
counting when it is RELEASED, replaced by a claim of another epoch (the agent restarted: what
was sent under the old epoch will be skipped), or its partition is claimed by someone else with
a newer epoch. A claim that lost its race (an earlier claim of the same partition, of an epoch
at least its own) takes nothing: its agent claims again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.adapters.worker.registry_view import beats
from streams.wire import AgentRegistration, RegistrationStatus


@dataclass(slots=True)
class Registrations:
    """The last registration of each agent and the current owner of each partition."""

    last: dict[str, AgentRegistration] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)

    def apply(self, record: AgentRegistration) -> list[str]:
        """Take in the next registry record; the agents whose earlier claim it ends."""
        ended = []
        before = self.active(record.agent_id)
        if before is not None and (
            record.status is not RegistrationStatus.ACTIVE or record.epoch != before.epoch
        ):
            ended.append(record.agent_id)
        if before is not None and self.owners.get(before.partition) == record.agent_id:
            del self.owners[before.partition]
        self.last[record.agent_id] = record
        if record.status is RegistrationStatus.ACTIVE and not self._lost(record):
            ousted = self.owners.get(record.partition)
            if ousted is not None and ousted != record.agent_id:
                ended.append(ousted)
            self.owners[record.partition] = record.agent_id
        return ended

    def _lost(self, record: AgentRegistration) -> bool:
        """Whether ``record`` lost its partition's race: another agent's ACTIVE claim of it,
        recorded before and of an epoch at least its own, keeps it (the rule the agents apply,
        ``streams.adapters.worker.registry_view.beats``); the loser claims again elsewhere."""
        owner_id = self.owners.get(record.partition)
        owner = None if owner_id is None else self.last.get(owner_id)
        return owner is not None and beats(owner, record)

    def active(self, agent_id: str) -> AgentRegistration | None:
        """The agent's current claim, or None when it holds no partition."""
        record = self.last.get(agent_id)
        if record is None or record.status is not RegistrationStatus.ACTIVE:
            return None
        if self.owners.get(record.partition) != agent_id:
            return None
        return record
