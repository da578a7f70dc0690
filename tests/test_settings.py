"""Settings: defaults, environment, TOML file, and clear errors for bad values."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import ConfigError
from streams.settings import child_environment, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKD_BOOTSTRAP_SERVERS", "TASKD_CONFIG", "TASKD_TOPIC_PREFIX", "TASKD_SHARDS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_prefix == "taskd."
    assert settings.topics.tasks(0) == "taskd.tasks.p0"
    assert settings.topics.all_retries() == ["taskd.retry.1s", "taskd.retry.10s", "taskd.retry.1m"]


def test_environment_beats_file_and_file_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "taskd.toml"
    config.write_text('topic_prefix = "file."\nshards = 3\n')
    monkeypatch.setenv("TASKD_CONFIG", str(config))
    monkeypatch.setenv("TASKD_SHARDS", "5")
    settings = load_settings()
    assert (settings.topic_prefix, settings.shards) == ("file.", 5)


def test_retry_tiers_from_environment_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKD_RETRY_TIERS_MS", "[500, 5000]")
    assert load_settings().topics.all_retries() == ["taskd.retry.500ms", "taskd.retry.5s"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"priority_levels": 0}, "priority_levels"),
        ({"shards": -1}, "shards"),
        ({"bootstrap_servers": "no-port"}, "host:port"),
        ({"topic_prefix": "bad prefix/"}, "topic_prefix"),
        ({"retry_tiers_ms": (10_000, 1_000)}, "increasing"),
        ({"retry_tiers_ms": (0,)}, "> 0"),
        ({"security_protocol": "SASL_SSL"}, "sasl_username"),
        ({"http_port": 70_000}, "http_port"),
        ({"linger_ms": -1}, "linger_ms"),
        ({"batch_bytes": 10}, "batch_bytes"),
    ],
)
def test_bad_values_name_the_setting(overrides: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(**overrides)


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKD_SHARDS", "many")
    with pytest.raises(ConfigError, match="TASKD_SHARDS"):
        load_settings()


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("shards = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("shardz = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'shardz'"):
        load_settings(unknown)


def test_password_is_never_shown() -> None:
    settings = load_settings(
        security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="hunter2"
    )
    assert "hunter2" not in repr(settings)
    assert settings.kafka_config()["sasl.password"] == "hunter2"


@pytest.mark.parametrize(
    "given",
    [
        {"security_protocol": "SASL_PLAINTEXT", "sasl_password": "hunter2"},  # no username
        {"sasl_password": "hunter2", "shards": 0},
        {"sasl_password": "hunter2", "http_token": "hunter2", "priority_levels": "x"},
    ],
)
def test_an_invalid_setting_never_shows_a_secret(given: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**given)
    assert "hunter2" not in str(raised.value)
    assert "TASKD_SETTINGS" not in str(raised.value)  # no such variable


@given(st.text(max_size=30))
def test_any_prefix_is_accepted_or_rejected_with_config_error(prefix: str) -> None:
    try:
        settings = load_settings(topic_prefix=prefix)
    except ConfigError as error:
        assert "topic_prefix" in str(error)
    else:
        assert all(ch.isalnum() or ch in "._-" for ch in settings.topics.dispatch)


def test_batching_reaches_the_producers(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.adapters.kafka import producer_config

    monkeypatch.setenv("TASKD_LINGER_MS", "20")
    settings = load_settings()
    assert settings.batching_config() == {"linger.ms": 20, "batch.size": 1_048_576}
    assert producer_config(settings)["linger.ms"] == 20


@settings(max_examples=50, deadline=None)
@given(
    prefix=st.from_regex(r"[a-z0-9._-]{1,12}", fullmatch=True),
    shards=st.integers(1, 64),
    tiers=st.lists(st.integers(1, 10**6), min_size=1, max_size=4, unique=True).map(
        lambda tiers: tuple(sorted(tiers))
    ),
    linger_ms=st.integers(0, 1_000),
)
def test_a_child_given_the_environment_loads_exactly_these_settings(
    prefix: str, shards: int, tiers: tuple[int, ...], linger_ms: int
) -> None:
    chosen = load_settings(
        topic_prefix=prefix, shards=shards, retry_tiers_ms=tiers, linger_ms=linger_ms
    )
    parent = {"TASKD_CONFIG": "/nowhere.toml", "TASKD_SHARDS": "999", "HOME": "/home/x"}
    with mock.patch.dict(os.environ, parent, clear=True):
        child = child_environment(chosen)
    assert child["HOME"] == "/home/x"
    assert "TASKD_CONFIG" not in child  # the parent's own file is not the child's
    with mock.patch.dict(os.environ, child, clear=True):
        assert load_settings() == chosen


def test_an_empty_setting_cannot_pass_through_the_environment() -> None:
    with pytest.raises(ConfigError, match="topic_prefix"):
        load_settings(topic_prefix="").environment()
