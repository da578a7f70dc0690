"""The public names of the routing strategies, and the check that a configured name is one of them.

The names are part of the settings contract (users write them in their configuration), so they
live apart from the implementations and never change spelling.
"""

from __future__ import annotations

from streams.errors import ConfigError

ROUND_ROBIN = "round-robin"
WEIGHTED = "weighted"
LEAST_CONNECTIONS = "least-connections"
RANDOM = "random"
POWER_OF_TWO_CHOICES = "power-of-two-choices"
CONSISTENT_HASH = "consistent-hash"
CAPACITY = "capacity"
PERFORMANCE = "performance"
AFFINITY = "affinity"
PACKING = "packing"
ROUND_ROBIN_PUSH = "round-robin-push"
RANDOM_PUSH = "random-push"

PUSH_STRATEGIES: frozenset[str] = frozenset({ROUND_ROBIN_PUSH, RANDOM_PUSH})
"""Naive baselines that push to any healthy capable agent, ignoring free slots (no late binding)."""

STRATEGY_NAMES: tuple[str, ...] = (
    ROUND_ROBIN,
    WEIGHTED,
    LEAST_CONNECTIONS,
    RANDOM,
    POWER_OF_TWO_CHOICES,
    CONSISTENT_HASH,
    CAPACITY,
    PERFORMANCE,
    AFFINITY,
    PACKING,
    ROUND_ROBIN_PUSH,
    RANDOM_PUSH,
)
"""Every valid strategy name, in the order the documentation lists them."""


def check_strategy_name(name: str, *, field: str) -> None:
    """Raise :class:`ConfigError` naming ``field`` and the valid names if ``name`` is unknown."""
    if name not in STRATEGY_NAMES:
        valid = ", ".join(STRATEGY_NAMES)
        raise ConfigError(f"{field}: unknown routing strategy {name!r}; valid names: {valid}")


def is_late_binding(name: str) -> bool:
    """True when the strategy only picks agents with a free slot (all but the push baselines)."""
    return name not in PUSH_STRATEGIES
