"""The agents' comings and goings in the dispatcher's log (the core's health transitions).

- INFO: an agent first seen (``agent a1 joined: claim epoch 1, capacity 4, ...``), back after
  DOWN in the same run (``came back``) or with a new claim epoch (``agent a1 restarted: claim
  epoch 1 -> 2, ...``); draining (READY -> DRAINING) and taking work again; back from SUSPECT
  (``came back after its silence``); left by signing off or by its claim ending, holding no task.
- WARNING: SUSPECT (silent past ``suspect_after_ms``: its tasks stay with it); DOWN by silence
  (``agent a1 down: silent for more than 10000 ms; its 3 task(s) go back to the queue``); left
  while holding tasks (a crash the registry saw first).

Every instance of a group sees every agent, so each logs the same transitions. Each kind is
rate-limited (``TRANSITION_BURST`` a minute in full, then a summary).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from streams.adapters.logs import RateLimitedLog
from streams.core.agents import HealthEvent, Transition
from streams.core.model import AgentInfo, AgentState

log = logging.getLogger(__name__)

TRANSITION_BURST = 50
"""Transitions of one kind logged in full per minute (a fleet starting, a zone lost)."""
_S = AgentState
_INCARNATIONS_KEPT = 100_000
"""Agents whose claim epoch is remembered (to tell a restart); the oldest are forgotten."""


class AgentLog:
    """``Distributor(on_transition=AgentLog(...))``: logs each agent transition."""

    def __init__(
        self,
        *,
        suspect_after_ms: int,
        down_after_ms: int,
        capacity_of: Callable[[str], int | None] = lambda _agent_id: None,
    ) -> None:
        """``capacity_of``: the capacity an agent announced. The core counts only this
        instance's share of its slots, which is 0 until the instance owns shards, and is
        logged as ``share``."""
        self._capacity_of = capacity_of
        self._suspect_after_ms = suspect_after_ms
        self._down_after_ms = down_after_ms
        self._limited = RateLimitedLog(log, "agent transitions", burst=TRANSITION_BURST)
        self._incarnation: dict[str, int] = {}
        """Each agent's claim epoch last seen."""

    def __call__(self, transition: Transition, agent: AgentInfo) -> None:
        before, after = transition.before, transition.after
        if after is _S.JOINING:  # transient: the state it settles in tells the rest
            return
        agent_id, epoch = transition.agent_id, transition.incarnation
        known = self._incarnation.get(agent_id)
        fields = {
            "agent_id": agent_id,
            "state": after.value,
            "previous_state": None if before is None else before.value,
            "claim_epoch": epoch,
        }
        if after is _S.DOWN:
            self._down(transition, agent, fields)
        elif before is _S.JOINING:
            self._joined(agent, known, epoch, fields)
        elif after is _S.SUSPECT:
            self._emit(
                logging.WARNING,
                "suspect",
                "agent %s suspect: silent for more than %d ms; its %d task(s) stay with it "
                "unless it stays silent for %d ms",
                (agent_id, self._suspect_after_ms, agent.in_flight, self._down_after_ms),
                fields,
            )
        elif before is _S.SUSPECT:
            self._emit(
                logging.INFO,
                "came back",
                "agent %s came back after its silence (%s)",
                (agent_id, after.value),
                fields,
            )
        elif after is _S.DRAINING:
            self._emit(
                logging.INFO,
                "draining",
                "agent %s draining: it finishes its %d task(s) and takes no more",
                (agent_id, agent.in_flight),
                fields,
            )
        elif before is _S.DRAINING and after is _S.READY:
            self._emit(logging.INFO, "ready", "agent %s takes work again", (agent_id,), fields)
        self._remember(agent_id, epoch)

    def _joined(
        self, agent: AgentInfo, known: int | None, epoch: int, fields: dict[str, object]
    ) -> None:
        skills = ",".join(sorted(agent.skills)) or "-"
        capacity = self._capacity_of(agent.agent_id)
        fields["share"] = agent.capacity
        shown = agent.capacity if capacity is None else capacity
        offer = f"capacity {shown}, skills {skills}, zone {agent.zone or '-'}"
        if agent.state is not _S.READY:
            offer += f", {agent.state.value}"
        args: tuple[int, ...]
        if known is None:
            what, text, args = "joined", "agent %s joined: claim epoch %d, %s", (epoch,)
        elif known == epoch or not epoch:
            what, text, args = "came back", "agent %s came back: claim epoch %d, %s", (epoch,)
        else:
            what, text = "restarted", "agent %s restarted: claim epoch %d -> %d, %s"
            args = (known, epoch)
        fields["previous_claim_epoch"] = known
        self._emit(logging.INFO, what, text, (agent.agent_id, *args, offer), fields)

    def _down(self, transition: Transition, agent: AgentInfo, fields: dict[str, object]) -> None:
        agent_id, held, cause = transition.agent_id, agent.in_flight, transition.cause
        if transition.before is None:  # a stranger's goodbye: it never took work
            return
        if cause is HealthEvent.SILENT_DOWN:
            self._emit(
                logging.WARNING,
                "down",
                "agent %s down: silent for more than %d ms; its %d task(s) go back to the queue",
                (agent_id, self._down_after_ms, held),
                fields,
            )
            return
        how = "signed off" if cause is HealthEvent.HEARTBEAT_STOPPING else "its claim ended"
        self._emit(
            logging.WARNING if held else logging.INFO,
            "left",
            "agent %s left (%s); %d task(s) it held go back to the queue",
            (agent_id, how, held),
            fields,
        )

    def _remember(self, agent_id: str, epoch: int) -> None:
        if epoch:
            self._incarnation.pop(agent_id, None)
            self._incarnation[agent_id] = epoch
            if len(self._incarnation) > _INCARNATIONS_KEPT:
                del self._incarnation[next(iter(self._incarnation))]

    def _emit(
        self,
        level: int,
        kind: str,
        text: str,
        args: tuple[object, ...],
        fields: dict[str, object],
    ) -> None:
        self._limited.log(level, kind, text, *args, extra={**fields, "transition": kind})
