"""The grouping placer: wraps the routing placer for one release pass.

The scheduler still decides which task goes next (priorities, deadlines, fair share, quotas);
this placer only changes *where* a task of a batch type goes and *whether it goes yet*:

- a group that is not full and not due is held: ``place`` answers None (busy), which blocks
  that type's class for this pass only, so other types and levels go on as before;
- the first task of a group goes to the announcing agent with the most free slots, the next
  ones of the same type to that agent while it has a free slot, up to the group's size.

Every placement still goes through the router (a targeted route for the group's agent): an
agent without a free slot, outside the rule's pool or the job's zone is never chosen, so late
binding and routing rules hold as without grouping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streams.core.grouping.handlers import AgentLookup, GroupLimit
from streams.core.grouping.policy import Grouping
from streams.core.model import AgentInfo, Job
from streams.core.scheduling import NeverPlaceable


class TargetablePlacer(Protocol):
    """A placer that can also be asked for one agent in particular (``RoutingPlacer``)."""

    @property
    def total_slots(self) -> int: ...

    @property
    def free_slots(self) -> int: ...

    def place(self, job: Job) -> str | NeverPlaceable | None: ...

    def place_on(self, job: Job, agent_id: str) -> str | None:
        """``agent_id`` if the router would send ``job`` there now (its slot is then taken)."""
        ...

    def late_binding(self, job: Job) -> bool: ...


@dataclass(slots=True)
class SentGroup:
    """Tasks of one type sent together to one agent in a pass."""

    task_type: str
    agent_id: str
    size: int
    """The most it may take."""
    placed: int = 1


class GroupingPlacer:
    """Holds and gathers the tasks of batch types for one release pass (see the module)."""

    def __init__(
        self, inner: TargetablePlacer, grouping: Grouping, agent: AgentLookup, now_ms: int
    ) -> None:
        self._inner = inner
        self._grouping = grouping
        self._agent = agent
        self._now_ms = now_ms
        self._limits: dict[str, GroupLimit | None] = {}
        self._open: dict[str, SentGroup] = {}
        self.sent: list[SentGroup] = []
        """Every group started in this pass, in order."""

    @property
    def total_slots(self) -> int:
        return self._inner.total_slots

    @property
    def free_slots(self) -> int:
        return self._inner.free_slots

    def place(self, job: Job) -> str | NeverPlaceable | None:
        """As ``Placer.place``; None also while the job's group is held."""
        limit = self._limit_of(job.task_type)
        if limit is None or not self._inner.late_binding(job):
            return self._inner.place(job)
        group = self._open.get(job.task_type)
        if group is not None and group.placed < group.size:
            if self._inner.place_on(job, group.agent_id) is not None:
                group.placed += 1
                return group.agent_id
            rest = group.size - group.placed  # its agent is full: the rest goes to another
            return self._start(job, limit, rest) or self._inner.place(job)
        if not self._grouping.ready(job.task_type, limit, self._now_ms):
            return None
        return self._start(job, limit, limit.size) or self._inner.place(job)

    def in_group(self, task_type: str, agent_id: str) -> bool:
        """Whether the tasks of ``task_type`` placed on ``agent_id`` in this pass went as a
        group (the pass may have started several of the type, on several agents)."""
        return any(g.task_type == task_type and g.agent_id == agent_id for g in self.sent)

    def _start(self, job: Job, limit: GroupLimit, size: int) -> str | None:
        """Start a group of at most ``size`` on the announcing agent with the most free slots
        that takes ``job``; None when none does."""
        for agent in _by_free_slots(limit.agents, job):
            if self._inner.place_on(job, agent.agent_id) is not None:
                group = SentGroup(job.task_type, agent.agent_id, size)
                self._open[job.task_type] = group
                self.sent.append(group)
                return agent.agent_id
        return None

    def _limit_of(self, task_type: str) -> GroupLimit | None:
        if task_type not in self._limits:
            self._limits[task_type] = self._grouping.limit(task_type, self._agent)
        return self._limits[task_type]


def _by_free_slots(agents: tuple[AgentInfo, ...], job: Job) -> list[AgentInfo]:
    """The agents that may run ``job`` and have a free slot, the roomiest first (ties: the
    order of registration)."""
    free = [agent for agent in agents if agent.can_run(job) and agent.free_slots > 0]
    return sorted(free, key=lambda agent: -agent.free_slots)
