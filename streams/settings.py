"""Settings: one frozen, validated object built once at the entry point and passed down.

Sources, strongest first: explicit arguments, environment variables ``TASKD_*``, a TOML file
(``TASKD_CONFIG`` or ``--config``), then the defaults below. Invalid values raise
:class:`~streams.errors.ConfigError` naming the setting, the variable and the problem.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streams.config_errors import ENV_NESTING, ENV_PREFIX, describe
from streams.dispatcher_config import DispatcherConfig
from streams.errors import ConfigError
from streams.wire.limits import EXCERPT_BYTES, TaskLimits
from streams.wire.topics import TopicNames

_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{0,200}$")
"""What a topic prefix may hold: characters of Kafka topic names (empty: no prefix)."""
_HOST_PORT = re.compile(r"^[^\s,:]+:\d{1,5}$")


class Settings(BaseSettings):
    """Every setting of Task Distributor, with its default and its meaning."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
        frozen=True,
        extra="forbid",
        env_ignore_empty=True,
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port"
    )
    topic_prefix: str = Field("taskd.", description="prefix of every topic name")
    priority_levels: int = Field(4, ge=1, le=16, description="priority levels, 0 most urgent")
    shards: int = Field(
        6, ge=1, le=1000, description="partitions of the task, retry, results, dlq topics"
    )
    dispatch_partitions: int = Field(
        64, ge=1, le=10000, description="partitions of the dispatch topic (max agents)"
    )
    replication_factor: int = Field(1, ge=1, le=10)
    retention_ms: int = Field(7 * 24 * 3_600_000, ge=60_000, description="topic retention")
    retry_tiers_ms: tuple[int, ...] = Field(
        (1_000, 10_000, 60_000), description="backoff of each retry tier"
    )
    schema_registry_url: str | None = Field(
        None, description="Confluent schema registry; when set, the Confluent framing is used"
    )
    record_format: Literal["avro", "json"] = Field(
        "avro",
        description="results, events, dead letters and outcomes as Avro or as JSON text (for "
        "kcat and console consumers); readers take both",
    )
    max_task_id_bytes: int = Field(
        512, ge=32, le=65_536, description="longest task id (and affinity key, target agent)"
    )
    max_task_type_bytes: int = Field(128, ge=8, le=4_096, description="longest task type")
    max_payload_bytes: int = Field(
        262_144, ge=1_024, le=16 * 1_048_576, description="largest task payload"
    )
    max_headers_bytes: int = Field(
        16_384, ge=256, le=1_048_576, description="largest headers (and tenant, zone, skills)"
    )
    max_output_bytes: int = Field(
        262_144, ge=1_024, le=16 * 1_048_576, description="largest handler output"
    )
    max_record_bytes: int = Field(
        1_000_000,
        ge=65_536,
        le=64 * 1_048_576,
        description="largest record written (at most the broker's message.max.bytes)",
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_mechanism: str = "SCRAM-SHA-512"
    security_protocol: str = Field("PLAINTEXT", pattern="^(PLAINTEXT|SASL_PLAINTEXT|SASL_SSL|SSL)$")
    ssl_ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM) the broker's certificate is checked against, with SSL "
        "or SASL_SSL (default: the system's)",
    )
    ssl_cert_file: Path | None = Field(
        None, description="this client's certificate (PEM), for a broker that asks for one"
    )
    ssl_key_file: Path | None = Field(None, description="the private key (PEM) of ssl_cert_file")
    ssl_key_password: SecretStr | None = Field(
        None, description="the password of ssl_key_file, if it is encrypted"
    )
    http_host: str = Field("127.0.0.1", description="bind address of the dispatcher's HTTP views")
    http_port: int = Field(6066, ge=0, le=65535, description="dispatcher's /metrics, /status")
    http_token: SecretStr | None = Field(
        None,
        description="the dispatcher's HTTP views answer only requests with the header "
        "'Authorization: Bearer <token>' (none: every request)",
    )
    http_metrics_open: bool = Field(
        True, description="/metrics answers without http_token (for Prometheus)"
    )
    agent_metrics_host: str = Field(
        "127.0.0.1", description="bind address of an agent's /metrics (0.0.0.0: every interface)"
    )
    agent_metrics_port: int = Field(
        9400,
        ge=0,
        le=65535,
        description="an agent's /metrics port; taken: the next free of the 64 from it "
        "(0: any free one)",
    )
    data_dir: Path = Field(
        Path(".run/state"),
        description="where local runs (taskd bench, taskd demo) keep their files; the "
        "dispatcher keeps its state in Kafka (<prefix>dispatcher-state)",
    )
    linger_ms: int = Field(
        5,
        ge=0,
        le=1_000,
        description="how long task producers (the client) wait to fill a batch (ms)",
    )
    batch_bytes: int = Field(
        1_048_576, ge=1_024, le=64 * 1_048_576, description="a producer batch's size (bytes)"
    )
    connect_timeout_ms: int = Field(
        10_000,
        ge=100,
        le=600_000,
        description="how long a command waits for a Kafka broker to answer before it gives up "
        "with one line naming the address (ms)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="the dispatcher's and agents' log level"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="the dispatcher's and agents' logs on stderr: text, or json lines"
    )
    dispatcher: DispatcherConfig = Field(
        default_factory=DispatcherConfig,
        description="the dispatcher's timings, bounds and scheduling and routing policies "
        "(the [dispatcher] table; docs/operations.md, Policies)",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",")]
        bad = [server for server in servers if not _HOST_PORT.fullmatch(server)]
        if bad or not servers:
            raise ValueError("expected host:port[,host:port...]")
        return ",".join(servers)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.fullmatch(value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-' (Kafka topic names)")
        return value

    @field_validator("retry_tiers_ms")
    @classmethod
    def _check_tiers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(tier <= 0 for tier in value):
            raise ValueError("every retry backoff must be > 0 ms")
        if list(value) != sorted(set(value)):
            raise ValueError("retry backoffs must be strictly increasing")
        return value

    @field_validator("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        given = [name for name in _TLS_FILES if getattr(self, name) is not None]
        if given and not self.security_protocol.endswith("SSL"):
            raise ValueError(
                f"{', '.join(given)}: only with security_protocol SSL or SASL_SSL, "
                f"not {self.security_protocol}"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("ssl_cert_file and ssl_key_file go together")
        return self

    @model_validator(mode="after")
    def _check_sasl(self) -> Settings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(f"{self.security_protocol} needs sasl_username and sasl_password")
        return self

    @model_validator(mode="after")
    def _check_preemption(self) -> Settings:
        try:  # the levels it names must be levels (the core's check, its message)
            self.dispatcher.preemption().check_levels(self.priority_levels)
        except ConfigError as error:
            raise ValueError(f"dispatcher.{error}") from None
        return self

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        sizes = (("a task", self.task_limits().task_bytes), ("an output", self.max_output_bytes))
        for what, size in sizes:
            if size + EXCERPT_BYTES > self.max_record_bytes:
                raise ValueError(
                    f"{what} ({size:,} bytes) would not fit max_record_bytes "
                    f"({self.max_record_bytes:,}): lower the max_*_bytes or raise it"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix, self.priority_levels, self.retry_tiers_ms)

    def batching_config(self) -> dict[str, int]:
        """The produce-side micro-batching of every producer (client, dispatcher, agents)."""
        return {"linger.ms": self.linger_ms, "batch.size": self.batch_bytes}

    def views_token(self) -> str | None:
        """The bearer token the dispatcher's HTTP views ask for (``http_token``), if any."""
        return self.http_token.get_secret_value() if self.http_token else None

    def task_limits(self) -> TaskLimits:
        """The size limits every task is checked against (client and dispatcher)."""
        return TaskLimits(
            id_bytes=self.max_task_id_bytes,
            type_bytes=self.max_task_type_bytes,
            payload_bytes=self.max_payload_bytes,
            headers_bytes=self.max_headers_bytes,
        )

    def environment(self) -> dict[str, str]:
        """These settings as ``TASKD_*`` variables: a child ``taskd`` process given them (and
        no other ``TASKD_*``, see :func:`child_environment`) loads exactly these settings."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, BaseModel):  # a table: the whole of it, as JSON
                text = value.model_dump_json()
            else:
                text = json.dumps(list(value)) if isinstance(value, tuple) else str(value)
            if not text:  # an empty variable means unset (env_ignore_empty): it would not hold
                raise ConfigError(f"{name} is empty: it cannot be passed as {ENV_PREFIX}*")
            env[f"{ENV_PREFIX}{name.upper()}"] = text
        return env

    def kafka_config(self) -> dict[str, str | int | float | bool]:
        """The connection part of a librdkafka (confluent-kafka) configuration."""
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            **NO_NAGLE,
        }
        if self.sasl_username and self.sasl_password:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        for name, key in _TLS_FILES.items():
            if getattr(self, name) is not None:
                config[key] = str(getattr(self, name))
        if self.ssl_key_password is not None and self.ssl_key_file is not None:
            config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return config


NO_NAGLE = {"socket.nagle.disable": True}
"""librdkafka leaves Nagle's algorithm on (Kafka's Java client and the broker turn it off): a
small request written while an earlier one is unacknowledged waits in the kernel. Measured on
the dispatcher's producer (results bench, 2 runs each, load 3 to 6), outcome written -> on the
broker p50 1 ms to 0, p90 5 to 1-2, p99 23-27 to 12-16. For every other client it made no
difference that the paced probes (1,000 and 2,000 tasks/s, 2 runs each way) could tell from
their noise; it is off everywhere so that no client of ours waits for it."""

_TLS_FILES = {
    "ssl_ca_file": "ssl.ca.location",
    "ssl_cert_file": "ssl.certificate.location",
    "ssl_key_file": "ssl.key.location",
}
"""The TLS settings that name files, and the librdkafka key of each."""


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with its own ``TASKD_*`` variables (a config file included)
    replaced by ``settings``: for a child process that must use exactly ``settings``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**inherited, **settings.environment()}


# The TOML path for the settings being built (pydantic-settings reads sources per class).
_config_file: dict[str, Path | None] = {"path": None}


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, ``TASKD_*`` variables and an optional TOML file.

    The file is ``config_file`` or else ``$TASKD_CONFIG``; a missing or unreadable file, a
    malformed one and every invalid value raise ConfigError.
    """
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    toml_path = _check_toml(Path(path)) if path else None
    _config_file["path"] = toml_path
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe(error, toml_path=toml_path, secrets=_SECRETS)) from error
    finally:
        _config_file["path"] = None


def _check_toml(path: Path) -> Path:
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"settings file {path} is not valid TOML: {error}") from error
    except OSError as error:
        raise ConfigError(f"settings file {path} cannot be read: {error}") from error
    return path


_SECRETS = frozenset(
    name
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation) or "password" in name or "token" in name
)
"""Settings whose values no message shows."""
