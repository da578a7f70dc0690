"""What one agent is: its identity, its slots and its handlers, checked on construction."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from streams.errors import ConfigError

HandlerRef = str | Callable[..., Any]
"""A handler: a callable, or its import path ``"module:function"``."""


def default_agent_id() -> str:
    """The host name and the process id, e.g. ``worker-3-4711``: unique on a cluster."""
    return f"{socket.gethostname()}-{os.getpid()}"


SEEN_ATTEMPTS = 100_000
"""The default window of (task id, attempt) pairs an agent remembers (docs/memory.md)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """One agent's settings; the broker and topics come from :class:`~streams.settings.Settings`.

    ``handler`` runs every task type without a handler of its own in ``handlers``; a task whose
    type has neither is REJECTED. Invalid values raise ConfigError naming the field.
    """

    agent_id: str = field(default_factory=default_agent_id)
    capacity: int
    """Slots: the most tasks run at once."""
    handler: HandlerRef | None = None
    handlers: Mapping[str, HandlerRef] = field(default_factory=dict)
    skills: tuple[str, ...] = ()
    zone: str | None = None
    weight: float = 1.0
    cost_per_task: float = 0.0
    """What a task costs on this agent, in any unit (money, energy), announced in its
    heartbeats: the packing strategy opens the cheapest idle agent first."""
    heartbeat_interval_ms: int = 1_000
    registration_ttl_ms: int = 30_000
    """A claim not renewed for this long no longer holds its partition; renewed every third."""
    prefetch: int | None = None
    """Assignments fetched ahead of a free slot; ``None``: as many as ``capacity``."""
    connect_timeout_ms: int = 10_000
    """How long to wait for the broker on start before giving up."""
    claim_attempts: int = 5
    """Races for a partition the agent may lose before it gives up."""
    seen_attempts: int = SEEN_ATTEMPTS
    """How many (task_id, attempt) pairs are remembered to drop repeats (bounded memory)."""
    result_linger_ms: int = 0
    """How long a result waits for others to leave in the same record (0: those ending in the
    same turn of the event loop go together)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", tuple(self.skills))
        object.__setattr__(self, "handlers", MappingProxyType(dict(self.handlers)))
        _check(self)

    @property
    def prefetch_slots(self) -> int:
        """Assignments held fetched but not started, at most."""
        return self.capacity if self.prefetch is None else self.prefetch


def _check(config: AgentConfig) -> None:
    problems = [
        f"{name} must be >= {least} (got {value})"
        for name, value, least in (
            ("capacity", config.capacity, 1),
            ("heartbeat_interval_ms", config.heartbeat_interval_ms, 1),
            ("registration_ttl_ms", config.registration_ttl_ms, 3),
            ("prefetch", config.prefetch_slots, 0),
            ("connect_timeout_ms", config.connect_timeout_ms, 1),
            ("claim_attempts", config.claim_attempts, 1),
            ("seen_attempts", config.seen_attempts, 1),
            ("result_linger_ms", config.result_linger_ms, 0),
        )
        if value < least
    ]
    if not config.agent_id.strip():
        problems.append("agent id must not be empty")
    if not config.weight > 0:
        problems.append(f"weight must be > 0 (got {config.weight})")
    if not 0 <= config.cost_per_task < math.inf:
        problems.append(f"cost_per_task must be a finite number >= 0 (got {config.cost_per_task})")
    if config.handler is None and not config.handlers:
        problems.append("at least one handler is needed (--handler module:function)")
    if problems:
        raise ConfigError("invalid agent settings: " + "; ".join(problems))
