"""SchedulerConfig: bad settings fail at construction with a message naming the field."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.scheduling import SchedulerConfig
from streams.errors import ConfigError

BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"levels": 0}, "levels"),
    ({"levels": -3}, "levels"),
    ({"aging_ms": 0}, "aging_ms"),
    ({"aging_ms": -1}, "aging_ms"),
    ({"escalation_ms": -1}, "escalation_ms"),
    ({"max_held": 0}, "max_held"),
    ({"max_held": 10, "resume_at": 10}, "resume_at"),
    ({"max_held": 10, "resume_at": -1}, "resume_at"),
    ({"reserved_top_share": 1.0}, "reserved_top_share"),
    ({"reserved_top_share": -0.1}, "reserved_top_share"),
    ({"reserved_top_share": math.nan}, "reserved_top_share"),
    ({"no_capable_agent_timeout_ms": -5}, "no_capable_agent_timeout_ms"),
    ({"tenant_weights": {"acme": 0.0}}, "tenant_weights['acme']"),
    ({"tenant_weights": {"acme": math.inf}}, "tenant_weights['acme']"),
    ({"tenant_max_in_flight": {"acme": 0}}, "tenant_max_in_flight['acme']"),
    ({"tenant_max_rate_per_s": {"acme": -2.0}}, "tenant_max_rate_per_s['acme']"),
    ({"tenant_burst": {"acme": 5.0}}, "tenant_burst['acme']"),
    (
        {"tenant_max_rate_per_s": {"acme": 2.0}, "tenant_burst": {"acme": 0.5}},
        "tenant_burst['acme']",
    ),
]


@pytest.mark.parametrize(("settings", "field_name"), BAD_SETTINGS)
def test_a_bad_setting_is_refused_with_its_name(settings: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"scheduler.{field_name} ")):
        SchedulerConfig(**settings)


@given(share=st.floats(allow_nan=False).filter(lambda share: not 0.0 <= share < 1.0))
def test_reserved_share_outside_zero_one_is_refused(share: float) -> None:
    with pytest.raises(ConfigError, match="reserved_top_share"):
        SchedulerConfig(reserved_top_share=share)


@given(levels=st.integers(max_value=0))
def test_fewer_than_one_level_is_refused(levels: int) -> None:
    with pytest.raises(ConfigError, match="levels"):
        SchedulerConfig(levels=levels)


@given(max_held=st.integers(1, 10**6))
def test_resume_defaults_to_80_percent_below_the_bound(max_held: int) -> None:
    config = SchedulerConfig(max_held=max_held)
    assert config.resume_threshold == max_held * 4 // 5
    assert config.resume_threshold < max_held


def test_defaults_are_valid_and_documented_values() -> None:
    config = SchedulerConfig()
    assert (config.levels, config.aging_ms, config.escalation_ms) == (4, 30_000, 2_000)
    assert (config.max_held, config.resume_threshold) == (100_000, 80_000)
    assert config.no_capable_agent_timeout_ms == 60_000


def test_tenant_mappings_are_copied_so_later_edits_do_not_leak_in() -> None:
    """And the config stays plain data: it can be copied, compared and dumped."""
    weights = {"acme": 2.0}
    config = SchedulerConfig(tenant_weights=weights)
    weights["acme"] = 100.0
    assert config.tenant_weights["acme"] == 2.0
    assert copy.deepcopy(config) == config
    assert dataclasses.asdict(config)["tenant_weights"] == {"acme": 2.0}


def test_burst_defaults_to_the_rate_but_at_least_one_token() -> None:
    config = SchedulerConfig(tenant_max_rate_per_s={"slow": 0.2, "fast": 50.0})
    assert config.burst_of("slow") == 1.0
    assert config.burst_of("fast") == 50.0
