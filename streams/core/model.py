"""Value types the core works on: the scheduler's view of a task and the router's view of an agent.

The wire layer builds these from records (``streams.wire.records``); the simulator builds them
directly. Times are integer milliseconds since the Unix epoch (or since the start of a
simulation): the core never reads a clock, every time is passed in.

Priorities are levels ``0 .. levels-1``; **0 is the most urgent**.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

REPLAY_HEADER = "taskd-replay"
"""Task header counting how often a dead letter was replayed (``taskd dlq replay`` raises it)."""
ORDERING_KEY_HEADER = "taskd-ordering-key"
"""Task header naming its ordering key: tasks sharing one run one at a time, in arrival order
(``streams.core.ordering``)."""


def replay_number(headers: Iterable[tuple[str, str]]) -> int:
    """The task's replay count from its headers (0 when absent or not a number)."""
    value = dict(headers).get(REPLAY_HEADER, "0")
    return int(value) if value.isascii() and value.isdigit() else 0


def dedupe_key(task_id: str, headers: Sequence[tuple[str, str]]) -> str:
    """What the duplicate window remembers of an ended task: its id, and its replay count.

    A replayed dead letter keeps its task id; counting the replay lets it run again, while a
    second delivery of the same replay is still dropped.
    """
    if not headers:  # the common case, on the hot path
        return task_id
    replay = replay_number(headers)
    return task_id if replay == 0 else f"{task_id}#replay{replay}"


@dataclass(frozen=True, slots=True)
class Job:
    """A task as the core sees it: what to order it by and where it may run."""

    task_id: str
    priority: int
    submitted_ms: int
    """When the producer submitted it; queue time and aging are measured from here."""
    tenant: str = "default"
    task_type: str = "default"
    deadline_ms: int | None = None
    """Absolute time by which it must have *started*; ``None``: no deadline."""
    expires_ms: int | None = None
    """Absolute time after which it must not be dispatched (from its TTL); ``None``: never."""
    required_skills: frozenset[str] = frozenset()
    zone: str | None = None
    """Preferred zone: agents there are chosen first, others only when none fits."""
    target_agent: str | None = None
    """Manual routing: only this agent may run it."""
    affinity_key: str | None = None
    cost: float = 1.0
    """Expected work in abstract units (an agent of speed 1 runs one unit in one second)."""
    attempt: int = 0
    """0 for the first run; each retry or failover adds one."""
    max_attempts: int = 3
    preempted: int = 0
    """How many of its runs were stopped for a more urgent task (``preemption.py``); kept in
    the dispatcher's state, so that its bound holds across a restart."""
    headers: tuple[tuple[str, str], ...] = ()
    ref: object = field(default=None, compare=False, repr=False)
    """The driver's own handle on the task (for the dispatcher: the wire record and where it
    was read). The core carries it along in the actions about the task and never looks inside."""

    def last_start_ms(self) -> int | None:
        """The time after which the task is expired (the earlier of deadline and TTL)."""
        if self.deadline_ms is None:
            return self.expires_ms
        if self.expires_ms is None:
            return self.deadline_ms
        return min(self.deadline_ms, self.expires_ms)

    @property
    def dedupe_key(self) -> str:
        return dedupe_key(self.task_id, self.headers)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def ordering_key(self) -> str | None:
        """Tasks sharing this key run one at a time, in arrival order; None: no such bond."""
        return self.header(ORDERING_KEY_HEADER) if self.headers else None


class AgentState(enum.Enum):
    """Health of an agent; transitions live in ``streams.core.agents``."""

    __hash__ = object.__hash__  # members are singletons: identity is equality, and cheaper

    JOINING = "JOINING"
    READY = "READY"
    DRAINING = "DRAINING"
    SUSPECT = "SUSPECT"
    DOWN = "DOWN"


@dataclass(slots=True)
class AgentInfo:
    """What the router knows of one agent. Owned and updated by the agent registry."""

    agent_id: str
    capacity: int
    """Slots: how many tasks it runs at once."""
    skills: frozenset[str] = frozenset()
    zone: str | None = None
    weight: float = 1.0
    state: AgentState = AgentState.READY
    in_flight: int = 0
    ewma_run_ms: float | None = None
    """Exponentially weighted mean run time of its recent tasks; ``None`` until one finished."""
    ewma_success: float = 1.0
    """Exponentially weighted share of its recent tasks that succeeded (0..1)."""
    cost_per_task: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    task_types: frozenset[str] | None = None
    """The task types it has a handler for; None: every type (a catch-all handler, or an agent
    that does not say)."""
    refused_types: frozenset[str] = frozenset()
    """Types it rejected for want of a handler (an agent that does not say what it handles):
    it is sent none of them until it restarts."""

    def handles(self, task_type: str) -> bool:
        """Whether it can be sent a task of ``task_type``."""
        if task_type in self.refused_types:
            return False
        return self.task_types is None or task_type in self.task_types

    @property
    def free_slots(self) -> int:
        free = self.capacity - self.in_flight
        return free if free > 0 else 0

    @property
    def load(self) -> float:
        """In-flight over capacity (0 when it has no capacity)."""
        return self.in_flight / self.capacity if self.capacity > 0 else 0.0

    def can_run(self, job: Job) -> bool:
        """Hard constraints only: skills and manual target (not health, not free slots)."""
        if job.target_agent is not None and job.target_agent != self.agent_id:
            return False
        return job.required_skills <= self.skills

    @property
    def accepts_work(self) -> bool:
        return self.state is AgentState.READY


class DeadLetterReason(enum.Enum):
    """Why a task ended in the dead letters (the ``DeadLetter.reason`` of the wire format)."""

    MALFORMED = "MALFORMED"
    EXPIRED = "EXPIRED"
    MAX_ATTEMPTS = "MAX_ATTEMPTS"
    FAILED = "FAILED"
    NO_CAPABLE_AGENT = "NO_CAPABLE_AGENT"
    REJECTED = "REJECTED"
    TOO_LARGE = "TOO_LARGE"
    """A task over a size limit (id, type, payload or headers), or a record too large to write."""
