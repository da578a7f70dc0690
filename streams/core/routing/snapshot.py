"""The fleet as of one membership version, with the candidates of each constraint class cached.

The registry bumps ``membership_version`` whenever anything a filter reads changes, so the
candidates of a class are computed once per version (``O(agents)``) and every decision after
that starts from a cached tier. ``in_flight`` is not part of the snapshot: strategies read it
live from the shared ``AgentInfo`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.model import AgentInfo, Job
from streams.core.routing.filters import ClassKey, Tier, class_tiers, target_tiers
from streams.core.window import LruMap

MAX_CLASSES = 256
"""Constraint classes cached per version (each holds up to a few references per agent); beyond
that the least recently used are recomputed, in ``O(agents)``."""


class Snapshot:
    """Candidates per constraint class for one membership version."""

    __slots__ = ("_by_id", "_classes", "_zone_strict", "agents", "version")

    def __init__(self, agents: Sequence[AgentInfo], version: int, *, zone_strict: bool) -> None:
        self.agents = tuple(agents)
        self.version = version
        self._zone_strict = zone_strict
        self._by_id = {agent.agent_id: agent for agent in self.agents}
        self._classes: LruMap[ClassKey, tuple[Tier, ...]] = LruMap(MAX_CLASSES)

    def is_current(self, agents: Sequence[AgentInfo], version: int) -> bool:
        """Same version; a changed agent count also counts as new, in case a bump was missed."""
        return version == self.version and len(agents) == len(self.agents)

    def candidates(self, job: Job, pool: frozenset[str] | None) -> tuple[Tier, ...]:
        """The job's tiers, in preference order; empty when no healthy agent can run it."""
        if job.target_agent is not None:
            return target_tiers(self._by_id, job, pool, zone_strict=self._zone_strict)
        key: ClassKey = (job.required_skills, job.zone, pool, job.task_type)
        tiers = self._classes.get(key)
        if tiers is None:
            tiers = class_tiers(self.agents, key, zone_strict=self._zone_strict)
            self._classes.put(key, tiers)
        return tiers
