"""The TLS settings: what every Kafka client is given, and one clear line for a mistake.
Proven against a TLS broker in tests/e2e/test_secure_broker.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKD_CONFIG", raising=False)
    for name in ("SECURITY_PROTOCOL", "SSL_CA_FILE", "SSL_CERT_FILE", "SSL_KEY_FILE"):
        monkeypatch.delenv(f"TASKD_{name}", raising=False)
    monkeypatch.delenv("TASKD_SSL_KEY_PASSWORD", raising=False)


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    return files


def test_every_client_gets_the_ca_certificate_key_and_password(
    pem: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKD_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("TASKD_SSL_CA_FILE", str(pem["ca"]))
    monkeypatch.setenv("TASKD_SSL_CERT_FILE", str(pem["cert"]))
    monkeypatch.setenv("TASKD_SSL_KEY_FILE", str(pem["key"]))
    monkeypatch.setenv("TASKD_SSL_KEY_PASSWORD", "pw")
    config = load_settings().kafka_config()
    assert config["security.protocol"] == "SSL"
    assert config["ssl.ca.location"] == str(pem["ca"])
    assert config["ssl.certificate.location"] == str(pem["cert"])
    assert config["ssl.key.location"] == str(pem["key"])
    assert config["ssl.key.password"] == "pw"


def test_sasl_ssl_with_a_ca_only(pem: dict[str, Path]) -> None:
    settings = load_settings(
        security_protocol="SASL_SSL",
        sasl_username="producer",
        sasl_password="pw",
        ssl_ca_file=pem["ca"],
    )
    config = settings.kafka_config()
    assert config["ssl.ca.location"] == str(pem["ca"])
    assert config["sasl.username"] == "producer"
    assert "ssl.certificate.location" not in config
    assert "ssl.key.password" not in config


def test_a_child_process_gets_the_same_tls_settings(
    pem: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        security_protocol="SSL", ssl_cert_file=pem["cert"], ssl_key_file=pem["key"],
        ssl_key_password="pw",
    )  # fmt: skip
    for name in [name for name in os.environ if name.startswith("TASKD_")]:
        monkeypatch.delenv(name)
    for name, value in settings.environment().items():  # what a child process is given
        monkeypatch.setenv(name, value)
    loaded = load_settings()
    assert loaded == settings
    assert loaded.kafka_config()["ssl.key.password"] == "pw"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"ssl_ca_file": "/nowhere/ca.pem"}, "ssl_ca_file (env TASKD_SSL_CA_FILE): no such file"),
        ({"ssl_cert_file": "cert"}, "ssl_cert_file and ssl_key_file go together"),
        ({"ssl_key_file": "key"}, "ssl_cert_file and ssl_key_file go together"),
        (
            {"security_protocol": "PLAINTEXT"},
            "ssl_ca_file: only with security_protocol SSL or SASL_SSL",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT"},
            "ssl_ca_file: only with security_protocol SSL or SASL_SSL",
        ),
    ],
)
def test_a_tls_mistake_is_one_line_naming_the_setting(
    pem: dict[str, Path], overrides: dict[str, str], says: str
) -> None:
    given: dict[str, object] = {
        "security_protocol": "SSL",
        "sasl_username": "u",
        "sasl_password": "pw",
        "ssl_ca_file": pem["ca"],
    }
    for name, value in overrides.items():
        given[name] = pem.get(value, value)
    with pytest.raises(ConfigError) as error:
        load_settings(**given)
    assert says in str(error.value)
    assert "\n" not in str(error.value)


def test_a_key_password_is_never_shown(pem: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(
            security_protocol="SSL", ssl_cert_file=pem["cert"], ssl_key_file="/nowhere/key.pem",
            ssl_key_password="hunter2",
        )  # fmt: skip
    assert "ssl_key_file" in str(error.value)
    assert "hunter2" not in str(error.value)
    settings = load_settings(
        security_protocol="SSL", ssl_cert_file=pem["cert"], ssl_key_file=pem["key"],
        ssl_key_password="hunter2",
    )  # fmt: skip
    assert "hunter2" not in repr(settings) + str(settings)
