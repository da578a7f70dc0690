"""Agent health: the state machine as a table, and the registry that applies it.

Theory of operation
-------------------
Heartbeats, silence and explicit leaves are *events*; ``TRANSITIONS`` maps
``(state, event)`` to the next state, and nothing else decides a state. A state of ``None``
means "not known yet": the first heartbeat registers the agent.

Invariants the registry keeps:

1. Only READY agents receive work: ``ready()``, ``total_slots`` and ``free_slots`` count READY
   agents only, and ``InFlight.assign`` refuses any other.
2. Silence is measured from the dispatcher's receipt time (``now_ms``) of the last accepted
   heartbeat, never from the agent's clock; an agent is SUSPECT once silent for more than
   ``suspect_after_ms`` and DOWN once silent for more than ``down_after_ms``. A heartbeat whose
   ``sent_ms`` is older than the last accepted one (reordered, replayed) is ignored.
3. SUSPECT keeps the agent's epoch and its leases: a late heartbeat brings it back without a
   failover. Only DOWN hands work back.
4. DOWN is entered at most once per epoch, so its ``Transition`` is reported once; the caller
   then takes the agent's leases back with ``InFlight.lost_with`` (or ``hand_back``), which
   returns each lease once and removes it.
5. Entering JOINING starts a new epoch (1 on the first join). JOINING is *transient*: the
   heartbeat that caused the join is applied again from JOINING in the same call, so a READY
   heartbeat from an unknown or DOWN agent yields ``None|DOWN -> JOINING -> READY`` at once.
   We decided against waiting for a second heartbeat: the first one already proves the agent
   is alive, and stale assignments are fenced by the epoch (the JOINING transition is where
   the adapter publishes the new epoch, before it places any task), not by a delay.
6. STOPPING (an agent announcing its exit) and an explicit leave both mean DOWN.
7. ``membership_version`` increases whenever an agent joins, or its state, capacity, skills,
   zone, weight or cost per task changes; never on in-flight or performance (EWMA) changes.
8. A heartbeat of another incarnation (``Heartbeat.incarnation``) from an agent that is not
   DOWN means it restarted: it goes DOWN first (what the old run held is lost), then the
   heartbeat is applied from DOWN, which makes it join again with a new epoch.
9. An outage of the dispatcher's own link to the broker is not the agents' silence: while it
   lasts the caller does not ``tick``, and once it ends (``hear_again``) silence is counted
   from then, so an agent goes DOWN only if it stays silent ``down_after_ms`` after it.
10. Nor is the silence of the whole fleet at once: when no live agent (of two or more) has
    heartbeated for ``suspect_after_ms``, the trouble is more likely between the agents and
    the broker than in every agent, and requeueing could not run anything anyway. Agents then
    go SUSPECT but not DOWN; the first heartbeat heard after it ends the fleet's silence, and
    the others' silence counts from then (as ``hear_again``). A lone agent's silence cannot be
    told from its failure: it goes DOWN as before.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from streams.core.grouping.handlers import BatchHandler
from streams.core.model import AgentInfo, AgentState
from streams.errors import ConfigError, CoreError


class HealthEvent(enum.Enum):
    """What can happen to an agent's health."""

    HEARTBEAT_READY = "HEARTBEAT_READY"
    HEARTBEAT_DRAINING = "HEARTBEAT_DRAINING"
    HEARTBEAT_STOPPING = "HEARTBEAT_STOPPING"
    SILENT_SUSPECT = "SILENT_SUSPECT"
    """Silent for more than ``suspect_after_ms``."""
    SILENT_DOWN = "SILENT_DOWN"
    """Silent for more than ``down_after_ms``."""
    LEAVE = "LEAVE"


_S = AgentState
_E = HealthEvent

TRANSITIONS: Final[Mapping[tuple[AgentState | None, HealthEvent], AgentState]] = {
    # First sight: the agent registers (a stopping stranger is recorded as DOWN).
    (None, _E.HEARTBEAT_READY): _S.JOINING,
    (None, _E.HEARTBEAT_DRAINING): _S.JOINING,
    (None, _E.HEARTBEAT_STOPPING): _S.DOWN,
    # JOINING is transient (invariant 5): the joining heartbeat is applied again from here.
    (_S.JOINING, _E.HEARTBEAT_READY): _S.READY,
    (_S.JOINING, _E.HEARTBEAT_DRAINING): _S.DRAINING,
    (_S.JOINING, _E.HEARTBEAT_STOPPING): _S.DOWN,
    (_S.JOINING, _E.SILENT_SUSPECT): _S.SUSPECT,
    (_S.JOINING, _E.SILENT_DOWN): _S.DOWN,
    (_S.JOINING, _E.LEAVE): _S.DOWN,
    (_S.READY, _E.HEARTBEAT_READY): _S.READY,
    (_S.READY, _E.HEARTBEAT_DRAINING): _S.DRAINING,
    (_S.READY, _E.HEARTBEAT_STOPPING): _S.DOWN,
    (_S.READY, _E.SILENT_SUSPECT): _S.SUSPECT,
    (_S.READY, _E.SILENT_DOWN): _S.DOWN,
    (_S.READY, _E.LEAVE): _S.DOWN,
    (_S.DRAINING, _E.HEARTBEAT_READY): _S.READY,
    (_S.DRAINING, _E.HEARTBEAT_DRAINING): _S.DRAINING,
    (_S.DRAINING, _E.HEARTBEAT_STOPPING): _S.DOWN,
    (_S.DRAINING, _E.SILENT_SUSPECT): _S.SUSPECT,
    (_S.DRAINING, _E.SILENT_DOWN): _S.DOWN,
    (_S.DRAINING, _E.LEAVE): _S.DOWN,
    # SUSPECT keeps epoch and leases (invariant 3).
    (_S.SUSPECT, _E.HEARTBEAT_READY): _S.READY,
    (_S.SUSPECT, _E.HEARTBEAT_DRAINING): _S.DRAINING,
    (_S.SUSPECT, _E.HEARTBEAT_STOPPING): _S.DOWN,
    (_S.SUSPECT, _E.SILENT_SUSPECT): _S.SUSPECT,
    (_S.SUSPECT, _E.SILENT_DOWN): _S.DOWN,
    (_S.SUSPECT, _E.LEAVE): _S.DOWN,
    # A DOWN agent that heartbeats again re-joins with a new epoch (invariant 5).
    (_S.DOWN, _E.HEARTBEAT_READY): _S.JOINING,
    (_S.DOWN, _E.HEARTBEAT_DRAINING): _S.JOINING,
    (_S.DOWN, _E.HEARTBEAT_STOPPING): _S.DOWN,
    (_S.DOWN, _E.SILENT_SUSPECT): _S.DOWN,
    (_S.DOWN, _E.SILENT_DOWN): _S.DOWN,
    (_S.DOWN, _E.LEAVE): _S.DOWN,
}

TRANSIENT: Final[frozenset[AgentState]] = frozenset({_S.JOINING})
"""States left in the same call, by applying the event that led into them once more."""

HEARTBEAT_EVENTS: Final[Mapping[str, HealthEvent]] = {
    "READY": _E.HEARTBEAT_READY,
    "DRAINING": _E.HEARTBEAT_DRAINING,
    "STOPPING": _E.HEARTBEAT_STOPPING,
}
"""The event of each heartbeat status."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """How long an agent may stay silent before it is suspected, then declared DOWN."""

    heartbeat_interval_ms: int = 1_000
    suspect_after_ms: int = 3_000
    down_after_ms: int = 10_000
    ewma_alpha: float = 0.2
    """Weight of the newest result in the run-time and success averages (0 < alpha <= 1)."""

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms <= 0:
            raise ConfigError(
                f"heartbeat_interval_ms must be > 0, got {self.heartbeat_interval_ms}"
            )
        if self.suspect_after_ms <= self.heartbeat_interval_ms:
            raise ConfigError(
                f"suspect_after_ms ({self.suspect_after_ms}) must be > heartbeat_interval_ms "
                f"({self.heartbeat_interval_ms}), or agents beating on time would be suspected"
            )
        if self.down_after_ms <= self.suspect_after_ms:
            raise ConfigError(
                f"down_after_ms ({self.down_after_ms}) must be > suspect_after_ms "
                f"({self.suspect_after_ms})"
            )
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise ConfigError(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha}")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An agent's periodic report: what it offers and whether it takes work."""

    agent_id: str
    capacity: int
    skills: frozenset[str]
    zone: str | None
    weight: float
    cost_per_task: float
    status: str
    """``READY``, ``DRAINING`` (finish in-flight work, take no more) or ``STOPPING`` (exiting)."""
    sent_ms: int
    """The agent's clock; used only to ignore heartbeats older than one already applied."""
    incarnation: int = 0
    """Which run of the agent beats: the epoch of its claim on its dispatch partition. A new
    incarnation means the agent restarted: what the old one held is lost. 0: not told."""
    task_types: frozenset[str] | None = None
    """The task types it has a handler for; None: every type."""
    batch_handlers: tuple[BatchHandler, ...] = ()
    """Its batch handlers (``streams.core.grouping``): how many tasks of a type one call takes."""

    def __post_init__(self) -> None:
        if self.status not in HEARTBEAT_EVENTS:
            raise CoreError(f"heartbeat status must be one of {sorted(HEARTBEAT_EVENTS)}")
        if self.capacity < 0 or self.weight < 0 or self.cost_per_task < 0:
            raise CoreError(f"heartbeat of {self.agent_id!r}: negative capacity/weight/cost")


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of an agent's state, as the adapters publish it and the router reacts to it."""

    agent_id: str
    before: AgentState | None
    after: AgentState
    at_ms: int
    epoch: int
    """The agent's epoch after the transition."""
    cause: HealthEvent | None = None
    """What moved it: a heartbeat's status, silence, or a leave."""
    incarnation: int = 0
    """The incarnation (claim epoch) of the run the transition is about: a restart's LEAVE
    (invariant 8) carries the old one, the join that follows the new one."""


@dataclass(slots=True)
class _Record:
    info: AgentInfo
    seen_ms: int
    """Receipt time of the last accepted heartbeat (dispatcher clock)."""
    sent_ms: int
    epoch: int
    incarnation: int = 0
    """Of the last accepted heartbeat (``Heartbeat.incarnation``)."""


def _slots(info: AgentInfo) -> tuple[int, int]:
    """This agent's share of (total_slots, free_slots): only READY agents count."""
    if info.state is not AgentState.READY:
        return (0, 0)
    return (info.capacity, info.free_slots)


Offer = tuple[int, frozenset[str], str | None, float, float, frozenset[str] | None]
"""What an agent offers: capacity, skills, zone, weight, cost per task, task types."""


def _offer(hb: Heartbeat) -> Offer:
    return (hb.capacity, hb.skills, hb.zone, hb.weight, hb.cost_per_task, hb.task_types)


def _offer_of(info: AgentInfo) -> Offer:
    return (
        info.capacity,
        info.skills,
        info.zone,
        info.weight,
        info.cost_per_task,
        info.task_types,
    )


class AgentRegistry:
    """Every agent ever seen, its health (by ``TRANSITIONS``), epoch, slots and performance.

    The ``AgentInfo`` objects it hands out are live and owned by the registry: read them, do not
    change them (``InFlight`` updates ``in_flight`` through ``set_in_flight``).
    """

    def __init__(self, config: HealthConfig) -> None:
        self._config = config
        self._records: dict[str, _Record] = {}
        self._agents: list[AgentInfo] = []
        self._due: list[tuple[int, str]] = []
        """Heap of (time tick() next acts on an agent, agent id); stale entries skipped lazily."""
        self._total_slots = 0
        self._free_slots = 0
        self._version = 0
        self._heard_again_ms = 0
        """When the dispatcher last heard from the broker again after an outage: silence before
        it is not counted (``hear_again``)."""
        self._last_beat_ms = 0
        """When any agent last heartbeated READY or DRAINING (invariant 10)."""
        self._fleet_was_silent = False
        """Some agent's DOWN waits for the fleet to be heard again (invariant 10)."""

    @property
    def config(self) -> HealthConfig:
        return self._config

    @property
    def agents(self) -> Sequence[AgentInfo]:
        """All known agents (DOWN ones too), in order of registration."""
        return self._agents

    @property
    def membership_version(self) -> int:
        """Changes whenever what a router caches changes (invariant 7)."""
        return self._version

    @property
    def total_slots(self) -> int:
        """Sum of the capacities of READY agents."""
        return self._total_slots

    @property
    def free_slots(self) -> int:
        """Sum of the free slots of READY agents."""
        return self._free_slots

    def get(self, agent_id: str) -> AgentInfo | None:
        record = self._records.get(agent_id)
        return None if record is None else record.info

    def ready(self) -> list[AgentInfo]:
        """The agents that may receive work now, in order of registration."""
        return [info for info in self._agents if info.state is AgentState.READY]

    def epoch(self, agent_id: str) -> int:
        """How many times the agent has joined."""
        return self._record(agent_id).epoch

    def incarnation(self, agent_id: str) -> int:
        """The incarnation of its last accepted heartbeat; assignments carry it, and the agent
        skips those of another incarnation."""
        return self._record(agent_id).incarnation

    def heard_at(self, agent_id: str) -> int | None:
        """When its last accepted heartbeat was received (dispatcher clock); None: unknown."""
        record = self._records.get(agent_id)
        return None if record is None else record.seen_ms

    def heartbeat(self, hb: Heartbeat, now_ms: int) -> list[Transition]:
        """Apply a heartbeat received at ``now_ms``: register, update the offer, move state."""
        event = HEARTBEAT_EVENTS[hb.status]
        if event is HealthEvent.HEARTBEAT_STOPPING:
            self._fleet_shrank()
        else:
            if self._fleet_was_silent:  # invariant 10: the others' silence counts from now
                self._fleet_was_silent = False
                self.hear_again(now_ms)
            self._last_beat_ms = max(self._last_beat_ms, now_ms)
        record = self._records.get(hb.agent_id)
        transitions: list[Transition] = []
        if record is None:
            record = self._register(hb, event, now_ms, transitions)
        elif hb.sent_ms < record.sent_ms:
            return []
        else:
            if hb.incarnation != record.incarnation and record.info.state is not AgentState.DOWN:
                transitions += self._fire(record, HealthEvent.LEAVE, now_ms)  # invariant 8
            if hb.incarnation != record.incarnation and record.info.refused_types:
                record.info.refused_types = frozenset()  # a new run may have the handler
                self._version += 1
            self._update_offer(record.info, hb)
        record.seen_ms = now_ms
        record.sent_ms = hb.sent_ms
        record.incarnation = hb.incarnation
        transitions += self._fire(record, event, now_ms)
        self._schedule(record)
        return transitions

    def tick(self, now_ms: int) -> list[Transition]:
        """Apply silence up to ``now_ms``: READY/DRAINING -> SUSPECT -> DOWN."""
        transitions: list[Transition] = []
        fleet_silent: bool | None = None  # asked once per call, at the first DOWN due
        while self._due and self._due[0][0] <= now_ms:
            due_ms, agent_id = heapq.heappop(self._due)
            record = self._records[agent_id]
            if self._due_ms(record) != due_ms:
                continue
            event = self._silence_event(record, now_ms)
            if event is HealthEvent.SILENT_DOWN:
                if fleet_silent is None:
                    fleet_silent = self.fleet_silent(now_ms)
                if fleet_silent:  # invariant 10: SUSPECT at most, until the fleet is heard
                    self._fleet_was_silent = True
                    if TRANSITIONS[(record.info.state, HealthEvent.SILENT_SUSPECT)] is not (
                        record.info.state
                    ):
                        transitions += self._fire(record, HealthEvent.SILENT_SUSPECT, now_ms)
                    continue
            if event is not None:
                transitions += self._fire(record, event, now_ms)
            self._schedule(record)
        return transitions

    def _fleet_shrank(self) -> None:
        """An agent left while the fleet's silence held others back from DOWN: judge them
        again at the next tick (a lone agent left is judged alone, invariant 10)."""
        if self._fleet_was_silent:
            self._compact()

    def fleet_silent(self, now_ms: int) -> bool:
        """Whether no live agent, of two or more, has heartbeated for ``suspect_after_ms``
        (invariant 10): silence then proves nothing about any one agent."""
        heard_ms = max(self._last_beat_ms, self._heard_again_ms)
        if now_ms - heard_ms <= self._config.suspect_after_ms:
            return False
        live = 0
        for info in self._agents:
            if info.state is not AgentState.DOWN:
                live += 1
                if live >= 2:
                    return True
        return False

    def hear_again(self, now_ms: int) -> None:
        """The dispatcher hears from the broker again after an outage: every agent's silence
        counts from ``now_ms``, as no heartbeat could have reached it before (invariant 9)."""
        self._heard_again_ms = max(self._heard_again_ms, now_ms)
        self._compact()

    def resize(self, agent_id: str, capacity: int) -> bool:
        """Change the capacity counted for a known agent, nothing else (its liveness is
        untouched); False for an unknown agent, whose first heartbeat will carry it."""
        if capacity < 0:
            raise CoreError(f"capacity of {agent_id!r} must be >= 0, got {capacity}")
        record = self._records.get(agent_id)
        if record is None:
            return False
        info = record.info
        if info.capacity != capacity:
            before = _slots(info)
            info.capacity = capacity
            self._account(before, info)
            self._version += 1
        return True

    def refuse_type(self, agent_id: str, task_type: str) -> None:
        """The agent has no handler for ``task_type``: send it none (until it restarts)."""
        record = self._records.get(agent_id)
        if record is None or task_type in record.info.refused_types:
            return
        record.info.refused_types = record.info.refused_types | {task_type}
        self._version += 1

    def leave(self, agent_id: str, now_ms: int) -> list[Transition]:
        """The agent left on purpose: DOWN. A leave of an unknown agent is a no-op."""
        record = self._records.get(agent_id)
        if record is None:
            return []
        transitions = self._fire(record, HealthEvent.LEAVE, now_ms)
        self._fleet_shrank()
        return transitions

    def record_result(self, agent_id: str, run_ms: int, success: bool) -> None:
        """Fold one finished task into the agent's EWMA of run time and success."""
        if run_ms < 0:
            raise CoreError(f"run_ms must be >= 0, got {run_ms}")
        info = self._record(agent_id).info
        alpha = self._config.ewma_alpha
        previous_ms = info.ewma_run_ms
        info.ewma_run_ms = (
            float(run_ms) if previous_ms is None else alpha * run_ms + (1 - alpha) * previous_ms
        )
        info.ewma_success = alpha * (1.0 if success else 0.0) + (1 - alpha) * info.ewma_success

    def set_in_flight(self, agent_id: str, count: int) -> None:
        """Set how many leases the agent holds; called by ``InFlight`` only."""
        if count < 0:
            raise CoreError(f"in_flight must be >= 0, got {count}")
        info = self._record(agent_id).info
        if info.state is AgentState.READY:  # only READY agents count (``_slots``)
            self._free_slots += max(0, info.capacity - count) - info.free_slots
        info.in_flight = count

    def next_wakeup_ms(self, now_ms: int) -> int | None:
        """The earliest time (>= ``now_ms``) at which ``tick`` would change a state."""
        while self._due:
            due_ms, agent_id = self._due[0]
            if self._due_ms(self._records[agent_id]) == due_ms:
                return max(due_ms, now_ms)
            heapq.heappop(self._due)
        return None

    def _record(self, agent_id: str) -> _Record:
        record = self._records.get(agent_id)
        if record is None:
            raise CoreError(f"unknown agent {agent_id!r}")
        return record

    def _register(
        self, hb: Heartbeat, event: HealthEvent, now_ms: int, transitions: list[Transition]
    ) -> _Record:
        state = TRANSITIONS[(None, event)]
        capacity, skills, zone, weight, cost, task_types = _offer(hb)
        info = AgentInfo(
            agent_id=hb.agent_id,
            capacity=capacity,
            skills=skills,
            zone=zone,
            weight=weight,
            state=state,
            cost_per_task=cost,
            task_types=task_types,
        )
        epoch = 1 if state is AgentState.JOINING else 0
        record = _Record(info, seen_ms=now_ms, sent_ms=hb.sent_ms, epoch=epoch)
        self._records[hb.agent_id] = record
        self._agents.append(info)
        self._account((0, 0), info)
        self._version += 1
        transitions.append(
            Transition(hb.agent_id, None, state, now_ms, epoch, event, hb.incarnation)
        )
        return record

    def _update_offer(self, info: AgentInfo, hb: Heartbeat) -> None:
        if _offer_of(info) == _offer(hb):
            return
        before = _slots(info)
        offer = _offer(hb)
        info.capacity, info.skills, info.zone, info.weight, info.cost_per_task = offer[:5]
        info.task_types = offer[5]
        self._account(before, info)
        self._version += 1

    def _fire(self, record: _Record, event: HealthEvent, now_ms: int) -> list[Transition]:
        """Apply ``event`` by the table, again while the state reached is transient."""
        transitions: list[Transition] = []
        while True:
            before = record.info.state
            after = TRANSITIONS[(before, event)]
            if after is before:
                return transitions
            transitions.append(self._enter(record, after, now_ms, event))
            if after not in TRANSIENT:
                return transitions

    def _enter(
        self, record: _Record, after: AgentState, now_ms: int, event: HealthEvent
    ) -> Transition:
        info = record.info
        before_slots = _slots(info)
        before = info.state
        if after is AgentState.JOINING:
            record.epoch += 1
        info.state = after
        self._account(before_slots, info)
        self._version += 1
        return Transition(
            info.agent_id, before, after, now_ms, record.epoch, event, record.incarnation
        )

    def _account(self, before: tuple[int, int], info: AgentInfo) -> None:
        """Move the slot totals by the change of one agent's share (exact, no drift)."""
        total, free = _slots(info)
        self._total_slots += total - before[0]
        self._free_slots += free - before[1]

    def _silence_event(self, record: _Record, now_ms: int) -> HealthEvent | None:
        silent_ms = now_ms - self._silent_since(record)
        if silent_ms > self._config.down_after_ms:
            return HealthEvent.SILENT_DOWN
        if silent_ms > self._config.suspect_after_ms:
            return HealthEvent.SILENT_SUSPECT
        return None

    def _due_ms(self, record: _Record) -> int | None:
        """When silence next changes this agent's state, read off the table."""
        state = record.info.state
        limits = (
            (HealthEvent.SILENT_SUSPECT, self._config.suspect_after_ms),
            (HealthEvent.SILENT_DOWN, self._config.down_after_ms),
        )
        for event, limit_ms in limits:
            if TRANSITIONS[(state, event)] is not state:
                return self._silent_since(record) + limit_ms + 1
        return None

    def _silent_since(self, record: _Record) -> int:
        return max(record.seen_ms, self._heard_again_ms)

    def _schedule(self, record: _Record) -> None:
        due_ms = self._due_ms(record)
        if due_ms is not None:
            heapq.heappush(self._due, (due_ms, record.info.agent_id))
        if len(self._due) > 4 * len(self._records) + 64:
            self._compact()

    def _compact(self) -> None:
        """Drop stale heap entries, so memory stays bounded even if tick() is rarely called."""
        entries = ((self._due_ms(r), r.info.agent_id) for r in self._records.values())
        self._due = [(due_ms, agent_id) for due_ms, agent_id in entries if due_ms is not None]
        heapq.heapify(self._due)
