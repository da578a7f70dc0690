"""Bad routing settings fail at start with a ConfigError that says what is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.routing import STRATEGY_NAMES, Fallback, RoutingConfig, RoutingRule
from streams.errors import ConfigError, TaskdError


@given(name=st.text(max_size=30).filter(lambda name: name not in STRATEGY_NAMES))
def test_an_unknown_strategy_is_refused_with_the_valid_names(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RoutingConfig(strategy=name)
    assert all(valid in str(raised.value) for valid in STRATEGY_NAMES)
    with pytest.raises(ConfigError, match="rule strategy"):
        RoutingRule(strategy=name)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_documented_strategy_is_accepted(name: str) -> None:
    config = RoutingConfig(strategy=name, rules=(RoutingRule(strategy=name),))
    assert config.strategy_names() == {name}


@pytest.mark.parametrize("load_factor", [0.99, 0.0, -1.0, float("nan"), float("inf")])
def test_a_load_factor_below_one_or_not_finite_is_refused(load_factor: float) -> None:
    with pytest.raises(ConfigError, match="hash_load_factor"):
        RoutingConfig(hash_load_factor=load_factor)


def test_a_load_factor_of_exactly_one_is_accepted() -> None:
    assert RoutingConfig(hash_load_factor=1.0).hash_load_factor == 1.0


@pytest.mark.parametrize(
    ("field", "value"), [("virtual_nodes", 0), ("virtual_nodes", -5), ("affinity_keys_max", 0)]
)
def test_sizes_below_one_are_refused(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=field):
        RoutingConfig(**{field: value})  # type: ignore[arg-type]


def test_rules_must_be_routing_rules() -> None:
    with pytest.raises(ConfigError, match=r"rules\[1\]"):
        RoutingConfig(rules=(RoutingRule(), {"strategy": "random"}))  # type: ignore[arg-type]


@pytest.mark.parametrize("pool", [frozenset(), "gold-1"])
def test_a_pool_must_be_a_non_empty_set_of_selectors(pool: frozenset[str]) -> None:
    with pytest.raises(ConfigError, match="pool"):
        RoutingRule(pool=pool)


def test_pools_and_fallbacks_from_a_settings_file_are_normalised() -> None:
    rule = RoutingRule(
        pool=["gold-1", "tier=gold"],  # type: ignore[arg-type]
        fallback=["WIDEN", "WAIT"],  # type: ignore[arg-type]
        match_header=["lane", "fast"],  # type: ignore[arg-type]
    )
    assert rule.pool == frozenset({"gold-1", "tier=gold"})
    assert rule.fallback == (Fallback.WIDEN, Fallback.WAIT)
    assert rule.match_header == ("lane", "fast")
    assert RoutingConfig(rules=[rule]).rules == (rule,)  # type: ignore[arg-type]


def test_an_unknown_fallback_step_is_refused_with_the_valid_steps() -> None:
    with pytest.raises(ConfigError, match="WIDEN, WAIT, DEAD_LETTER"):
        RoutingRule(fallback=("RETRY",))  # type: ignore[arg-type]


@pytest.mark.parametrize("terminal", [Fallback.WAIT, Fallback.DEAD_LETTER])
def test_nothing_may_follow_a_step_that_ends_the_chain(terminal: Fallback) -> None:
    with pytest.raises(ConfigError, match="must come last"):
        RoutingRule(fallback=(terminal, Fallback.WIDEN))


@pytest.mark.parametrize("header", [("lane",), ("lane", "fast", "x"), ("lane", 3)])
def test_a_header_criterion_is_a_name_and_a_value(header: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="match_header"):
        RoutingRule(match_header=header)  # type: ignore[arg-type]


def test_config_errors_belong_to_the_one_hierarchy() -> None:
    with pytest.raises(TaskdError):
        RoutingConfig(virtual_nodes=0)
