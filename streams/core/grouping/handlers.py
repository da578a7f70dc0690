"""What the agents say of their batch handlers, and the group a task type gets from it.

An agent announces, per task type with a batch handler, the most tasks one call takes
(``max_size``) and how long its batcher waits for more (``max_wait_ms``). A type is grouped
while at least one READY agent that handles it announces ``max_size > 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streams.core.model import AgentInfo, AgentState
from streams.errors import CoreError


@dataclass(frozen=True, slots=True)
class BatchHandler:
    """One batch handler of an agent: its task type and how its calls are fed."""

    task_type: str
    max_size: int
    max_wait_ms: int

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_wait_ms < 0:
            raise CoreError(
                f"batch handler of {self.task_type!r}: max_size must be >= 1 and "
                f"max_wait_ms >= 0 (got {self.max_size}, {self.max_wait_ms})"
            )


@dataclass(frozen=True, slots=True)
class GroupLimit:
    """How a type is grouped now: ``size`` tasks make a full group, ``wait_ms`` bounds the wait
    of one that is not full; ``agents``: the READY agents announcing a batch handler for it."""

    size: int
    wait_ms: int
    agents: tuple[AgentInfo, ...]


AgentLookup = Callable[[str], AgentInfo | None]


class BatchHandlers:
    """The batch handlers each agent announced in its last heartbeat, by task type."""

    def __init__(self) -> None:
        self._by_type: dict[str, dict[str, BatchHandler]] = {}
        self._by_agent: dict[str, tuple[BatchHandler, ...]] = {}

    def heard(self, agent_id: str, handlers: Iterable[BatchHandler]) -> tuple[list[str], list[str]]:
        """The agent's announcement replaces its previous one (none: it has no batch handler);
        the types announced by no agent before and those announced by none any more."""
        announced = tuple(handlers)
        if self._by_agent.get(agent_id, ()) == announced:
            return [], []
        gone: list[str] = []
        for old in self._by_agent.pop(agent_id, ()):
            of_type = self._by_type[old.task_type]
            del of_type[agent_id]
            if not of_type:
                del self._by_type[old.task_type]
                gone.append(old.task_type)
        if announced:
            self._by_agent[agent_id] = announced
        new: list[str] = []
        for handler in announced:
            of_type = self._by_type.setdefault(handler.task_type, {})
            if not of_type and handler.task_type not in gone:
                new.append(handler.task_type)
            of_type[agent_id] = handler
        return new, [task_type for task_type in gone if task_type not in self._by_type]

    def __bool__(self) -> bool:
        """Whether some agent announces a batch handler."""
        return bool(self._by_type)

    def types(self) -> Iterable[str]:
        """Every type some agent announced a batch handler for."""
        return self._by_type.keys()

    def limit(self, task_type: str, agent: AgentLookup, max_wait_ms: int) -> GroupLimit | None:
        """How ``task_type`` is grouped now, or None when no READY agent handling it batches.

        A full group is the most any one of those agents takes in one call and has slots
        for; it waits at most the least of their ``max_wait_ms`` and ``max_wait_ms``.
        """
        size, wait_ms, agents = 1, max_wait_ms, []
        for agent_id, handler in self._by_type.get(task_type, {}).items():
            info = agent(agent_id)
            if info is None or info.state is not AgentState.READY or not info.handles(task_type):
                continue
            agents.append(info)
            size = max(size, min(handler.max_size, info.capacity))
            wait_ms = min(wait_ms, handler.max_wait_ms)
        if size <= 1:
            return None
        return GroupLimit(size, wait_ms, tuple(agents))
