"""The routing strategies, one module per family, and :func:`build_strategies` to make them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streams.core.routing import names
from streams.core.routing.config import RoutingConfig
from streams.core.routing.strategies.affinity import Affinity
from streams.core.routing.strategies.base import Pick, Strategy
from streams.core.routing.strategies.hashing import BoundedLoads, ConsistentHash
from streams.core.routing.strategies.packing import Packing
from streams.core.routing.strategies.rotation import RoundRobin, SmoothWeighted
from streams.core.routing.strategies.sampling import PowerOfTwoChoices, RandomChoice
from streams.core.routing.strategies.scoring import LeastConnections, MostCapacity, Performance

__all__ = ["Pick", "Strategy", "build_strategies"]

_Factory = Callable[[RoutingConfig, BoundedLoads], Strategy]

_FACTORIES: dict[str, _Factory] = {
    names.ROUND_ROBIN: lambda config, loads: RoundRobin(free_only=True),
    names.WEIGHTED: lambda config, loads: SmoothWeighted(),
    names.LEAST_CONNECTIONS: lambda config, loads: LeastConnections(),
    names.RANDOM: lambda config, loads: RandomChoice(seed=config.seed, free_only=True),
    names.POWER_OF_TWO_CHOICES: lambda config, loads: PowerOfTwoChoices(seed=config.seed),
    names.CONSISTENT_HASH: lambda config, loads: ConsistentHash(loads),
    names.CAPACITY: lambda config, loads: MostCapacity(),
    names.PERFORMANCE: lambda config, loads: Performance(),
    names.AFFINITY: lambda config, loads: Affinity(loads, keys_max=config.affinity_keys_max),
    names.PACKING: lambda config, loads: Packing(),
    names.ROUND_ROBIN_PUSH: lambda config, loads: RoundRobin(free_only=False),
    names.RANDOM_PUSH: lambda config, loads: RandomChoice(seed=config.seed, free_only=False),
}


def build_strategies(config: RoutingConfig, strategy_names: Iterable[str]) -> dict[str, Strategy]:
    """One instance per name; consistent-hash and affinity share the hash rings."""
    loads = BoundedLoads(load_factor=config.hash_load_factor, virtual_nodes=config.virtual_nodes)
    return {name: _FACTORIES[name](config, loads) for name in strategy_names}
