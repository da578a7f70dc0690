"""The dispatcher's settings (the ``[dispatcher]`` table): every policy of the core reachable
from TOML and ``TASKD_DISPATCHER__*``, one line per mistake, the flags over them."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.distributor import DistributorConfig
from streams.core.routing import Fallback
from streams.core.scaling import ScalingConfig
from streams.core.scheduling import SchedulerConfig
from streams.dispatcher_config import (
    DispatcherConfig,
    RoutingRuleSetting,
    ScalingSettings,
    TenantPolicy,
)
from streams.errors import ConfigError
from streams.settings import Settings, load_settings

POLICIES = """
[dispatcher]
lease_ms = 60000
heartbeat_interval_ms = 500
suspect_after_ms = 2000
down_after_ms = 5000
aging_ms = 0
escalation_ms = 500
reserved_top_share = 0.1
prefetch_share = 0.25
strategy = "least-connections"
zone_strict = true

[dispatcher.tenants.acme]
weight = 3
max_in_flight = 5

[dispatcher.scaling]
headroom = 0.5
min_agents = 2

[dispatcher.tenants.globex]
max_rate_per_s = 20
burst = 40

[[dispatcher.routing_rules]]
match_type = "render"
pool = ["skill=gpu"]
fallback = ["WAIT"]

[[dispatcher.routing_rules]]
match_tenant = "globex"
match_header = ["lane", "fast"]
strategy = "random"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKD_"):
            monkeypatch.delenv(name)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taskd.toml"
    path.write_text(text)
    return path


def test_every_policy_in_the_file_reaches_the_core(tmp_path: Path) -> None:
    settings = load_settings(_file(tmp_path, POLICIES))
    core = settings.dispatcher.distributor(settings)
    scheduler, routing, health = core.scheduler, core.routing, core.health
    assert core.lease_ms == 60_000
    assert (health.heartbeat_interval_ms, health.suspect_after_ms, health.down_after_ms) == (
        500,
        2_000,
        5_000,
    )
    assert scheduler.aging_ms is None  # 0: strict priority
    assert (scheduler.escalation_ms, scheduler.reserved_top_share) == (500, 0.1)
    assert scheduler.tenant_weights == {"acme": 3.0, "globex": 1.0}
    assert scheduler.tenant_max_in_flight == {"acme": 5}
    assert scheduler.tenant_max_rate_per_s == {"globex": 20.0}
    assert scheduler.burst_of("globex") == 40.0
    assert (routing.strategy, routing.zone_strict) == ("least-connections", True)
    render, lane = routing.rules
    assert (render.match_type, render.pool, render.fallback) == (
        "render",
        frozenset({"skill=gpu"}),
        (Fallback.WAIT,),
    )
    assert (lane.match_tenant, lane.match_header, lane.strategy) == (
        "globex",
        ("lane", "fast"),
        "random",
    )
    assert settings.dispatcher.slots(8) == 10
    scaling = settings.dispatcher.scaling.core()
    assert (scaling.headroom, scaling.min_agents, scaling.cooldown_ms) == (0.5, 2, 300_000)


def test_the_defaults_are_the_cores() -> None:
    settings = Settings()
    core = DistributorConfig(
        scheduler=SchedulerConfig(levels=settings.priority_levels),
        retry_backoffs_ms=settings.retry_tiers_ms,
    )
    assert settings.dispatcher.distributor(settings) == core
    assert settings.dispatcher.scaling.core() == ScalingConfig()


def test_a_burst_without_a_rate_is_told_as_the_core_tells_it(tmp_path: Path) -> None:
    text = "[dispatcher.tenants.acme]\nburst = 5\n"
    said = r"dispatcher: scheduler\.tenant_burst\['acme'\] needs a tenant_max_rate_per_s"
    with pytest.raises(ConfigError, match=said):
        load_settings(_file(tmp_path, text))


def test_a_single_value_comes_from_its_variable_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKD_DISPATCHER__LEASE_MS", "90000")
    monkeypatch.setenv("TASKD_DISPATCHER__STRATEGY", "capacity")
    settings = load_settings(_file(tmp_path, POLICIES))
    assert (settings.dispatcher.lease_ms, settings.dispatcher.strategy) == (90_000, "capacity")
    assert settings.dispatcher.tenants["acme"].max_in_flight == 5  # the rest of the file holds


def test_each_mistake_is_one_line_naming_the_setting_and_its_variable(tmp_path: Path) -> None:
    text = (
        "[dispatcher]\nlease_ms = -1\nstrategy = 'fastest'\nprefetch_share = 2\nspeed = 3\n"
        "[dispatcher.tenants.acme]\nweight = 0\n"
        "[[dispatcher.routing_rules]]\nfallback = ['WAIT', 'WIDEN']\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(_file(tmp_path, text))
    head, *lines = str(caught.value).splitlines()
    assert head == "invalid settings (6 mistakes):"
    assert [line.split(":")[0] for line in lines] == [
        "  - dispatcher.lease_ms (env TASKD_DISPATCHER__LEASE_MS)",
        "  - dispatcher.prefetch_share (env TASKD_DISPATCHER__PREFETCH_SHARE)",
        "  - dispatcher.tenants.acme.weight (env TASKD_DISPATCHER__TENANTS)",
        "  - dispatcher.strategy (env TASKD_DISPATCHER__STRATEGY)",
        "  - dispatcher.routing_rules.0 (env TASKD_DISPATCHER__ROUTING_RULES)",
        "  - unknown setting 'dispatcher.speed'",
    ]
    assert "(got -1)" in lines[0] and "valid names: round-robin" in lines[3]
    assert "WAIT ends the chain" in lines[4]


def test_timings_out_of_order_are_told_as_the_core_tells_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKD_DISPATCHER__DOWN_AFTER_MS", "2000")
    with pytest.raises(ConfigError, match=r"down_after_ms \(2000\) must be > suspect_after_ms"):
        load_settings()


def test_flags_override_the_settings_and_are_checked_again(tmp_path: Path) -> None:
    config = load_settings(_file(tmp_path, POLICIES)).dispatcher
    flagged = config.overridden({"lease_ms": 1_000, "strategy": None, "aging_ms": 5_000})
    assert (flagged.lease_ms, flagged.strategy, flagged.aging_ms) == (
        1_000,
        "least-connections",
        5_000,
    )
    assert flagged.tenants == config.tenants
    assert config.overridden({"lease_ms": None}) is config
    with pytest.raises(ConfigError, match=r"dispatcher\.lease_ms"):
        config.overridden({"lease_ms": 0})


def test_a_child_process_gets_the_whole_table(tmp_path: Path) -> None:
    settings = load_settings(_file(tmp_path, POLICIES))
    env = settings.environment()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert load_settings() == settings


@given(
    weight=st.floats(allow_nan=True, allow_infinity=True),
    in_flight=st.integers(-3, 3),
    rate=st.floats(-5, 5),
)
def test_any_tenant_policy_is_accepted_by_the_core_or_refused_in_one_line(
    weight: float, in_flight: int, rate: float
) -> None:
    tenant = {"weight": weight, "max_in_flight": in_flight, "max_rate_per_s": rate}
    try:
        config = DispatcherConfig(tenants={"t": tenant})
    except ConfigError as error:
        assert str(error).startswith("invalid settings")
        assert "dispatcher.tenants.t." in str(error)
        return
    scheduler = config.scheduler(levels=4)  # what the settings accept, the core accepts
    assert scheduler.tenant_weights["t"] == weight


def test_every_setting_of_the_table_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "policies.md").read_text()
    first_cells = [line.split("|")[1] for line in doc.splitlines() if line.startswith("| `")]
    named = {name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell)}
    rules = {name.removeprefix("routing_rules[].") for name in named}
    assert set(DispatcherConfig.model_fields) - {"tenants", "routing_rules", "scaling"} <= named
    assert {f"tenants.NAME.{name}" for name in TenantPolicy.model_fields} <= named
    assert {f"scaling.{name}" for name in ScalingSettings.model_fields} <= named
    assert set(RoutingRuleSetting.model_fields) <= rules


def test_preemption_from_toml_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off by default; ``[dispatcher.preempt_after_ms]`` names levels as TOML keys."""
    assert not DispatcherConfig().preemption().enabled
    path = tmp_path / "taskd.toml"
    path.write_text(
        "[dispatcher]\npreemptible_levels = [2, 3]\n[dispatcher.preempt_after_ms]\n0 = 2000\n"
    )
    core = load_settings(path).dispatcher.preemption()
    assert (core.after_ms, core.victims, core.max_per_task) == ({0: 2000}, {2, 3}, 1)
    monkeypatch.setenv("TASKD_DISPATCHER__PREEMPT_AFTER_MS", '{"1": 50}')
    monkeypatch.setenv("TASKD_DISPATCHER__PREEMPT_MAX_PER_TASK", "2")
    settings = load_settings(path)
    assert settings.dispatcher.distributor(settings).preemption.after_ms == {0: 2000, 1: 50}
    assert settings.dispatcher.preempt_max_per_task == 2


def test_preemption_mistakes_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKD_DISPATCHER__PREEMPT_AFTER_MS", '{"0": -1}')
    with pytest.raises(ConfigError, match=r"preempt_after_ms\.0 .*greater than or equal to 0"):
        load_settings()
    monkeypatch.setenv("TASKD_DISPATCHER__PREEMPT_AFTER_MS", '{"0": 10}')
    monkeypatch.setenv("TASKD_DISPATCHER__PREEMPTIBLE_LEVELS", "[3, 4]")
    with pytest.raises(ConfigError, match=r"levels \[4\] do not exist \(levels are 0\.\.3\)"):
        load_settings()


def test_host_in_the_instance_id_is_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKD_DISPATCHER__INSTANCE_ID", "d-{host}-1")
    assert load_settings().dispatcher.instance_id == f"d-{socket.gethostname()}-1"
    flagged = Settings().dispatcher.overridden({"instance_id": "{host}"})
    assert flagged.instance_id == socket.gethostname()
