"""The router's settings: one frozen object, validated when it is built.

Built once at the entry point (from the settings file) and handed to :class:`Router`; a bad
value raises :class:`ConfigError` naming the field, so the process fails at start, not at the
first task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from streams.core.routing.names import AFFINITY, check_strategy_name
from streams.core.routing.rules import RoutingRule
from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """How the router picks agents.

    - ``strategy``: the default strategy name (``STRATEGY_NAMES``); rules may override it.
    - ``seed``: seeds every random choice, so the same inputs give the same decisions.
    - ``hash_load_factor``: ``c`` in the bounded-load bound ``ceil(c * average load)``, ``>= 1``,
      shared by capacity (see ``strategies/hashing.py``); lower balances better, higher keeps
      keys on their ring position more often.
    - ``virtual_nodes``: ring points per agent for consistent hashing, ``>= 1``.
    - ``rules``: routing rules, the first match wins.
    - ``zone_strict``: a job's zone is a hard constraint instead of a preference.
    - ``affinity_keys_max``: how many affinity keys the affinity strategy remembers (LRU).

    The EWMA smoothing of run times belongs to the agent registry, which keeps
    ``AgentInfo.ewma_run_ms`` and ``ewma_success``; the router only reads them.
    """

    strategy: str = AFFINITY
    seed: int = 0
    hash_load_factor: float = 1.25
    virtual_nodes: int = 100
    rules: tuple[RoutingRule, ...] = ()
    zone_strict: bool = False
    affinity_keys_max: int = 100_000

    def __post_init__(self) -> None:
        check_strategy_name(self.strategy, field="routing strategy")
        if not math.isfinite(self.hash_load_factor) or self.hash_load_factor < 1:
            raise ConfigError(
                f"routing hash_load_factor: must be a finite number >= 1, "
                f"got {self.hash_load_factor!r}"
            )
        if self.virtual_nodes < 1:
            raise ConfigError(f"routing virtual_nodes: must be >= 1, got {self.virtual_nodes}")
        if self.affinity_keys_max < 1:
            raise ConfigError(
                f"routing affinity_keys_max: must be >= 1, got {self.affinity_keys_max}"
            )
        object.__setattr__(self, "rules", _checked_rules(self.rules))

    def strategy_names(self) -> frozenset[str]:
        """Every strategy this configuration can apply: the default and those of its rules."""
        named = {rule.strategy for rule in self.rules if rule.strategy is not None}
        return frozenset({self.strategy, *named})


def _checked_rules(rules: Iterable[RoutingRule]) -> tuple[RoutingRule, ...]:
    checked = tuple(rules)
    for index, rule in enumerate(checked):
        if not isinstance(rule, RoutingRule):
            raise ConfigError(f"routing rules[{index}]: expected a RoutingRule, got {rule!r}")
    return checked
