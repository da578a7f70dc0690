"""The router: which agent runs a task, chosen by filters, a strategy and routing rules.

Pure core: standard library only, no I/O, no clock; randomness from the configured seed.
Usage::

    router = Router(RoutingConfig(strategy="affinity", seed=7))
    route = router.route(job, registry.agents(), registry.version, now_ms)
    if route.outcome is RouteOutcome.ROUTED:
        dispatch(job, route.agent_id)

See ``router.py`` for the decision procedure and ``rules.py`` for rules and fallbacks.
"""

from __future__ import annotations

from streams.core.routing.config import RoutingConfig
from streams.core.routing.hashring import HashRing, stable_hash
from streams.core.routing.names import PUSH_STRATEGIES, STRATEGY_NAMES, is_late_binding
from streams.core.routing.outcome import Route, RouteOutcome
from streams.core.routing.router import Router
from streams.core.routing.rules import Fallback, RoutingRule

__all__ = [
    "PUSH_STRATEGIES",
    "STRATEGY_NAMES",
    "Fallback",
    "HashRing",
    "Route",
    "RouteOutcome",
    "Router",
    "RoutingConfig",
    "RoutingRule",
    "is_late_binding",
    "stable_hash",
]
