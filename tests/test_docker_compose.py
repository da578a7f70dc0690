"""docker-compose.yml cannot run here (no Docker engine): check its structure against the code."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.dispatcher_config import DispatcherConfig
from streams.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (service.get("environment") or {}).items()}


def _taskd_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in _env(service).items() if k.startswith("TASKD_")}


def _published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> (first) host port of every published port ("127.0.0.1:HOST:CONTAINER",
    HOST a port or a range of them)."""
    return {container: hosts[0] for container, hosts in _published_ranges(service).items()}


def _published_ranges(service: dict[str, Any]) -> dict[int, range]:
    """Container port -> the host ports it may be published on (one per replica)."""
    ports = {}
    for entry in service.get("ports", []):
        *_, host, container = str(entry).split("#")[0].strip().split(":")
        first, _, last = host.partition("-")
        ports[int(container)] = range(int(first), int(last or first) + 1)
    return ports


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka", "topics", "dispatcher", "agent", "prometheus", "grafana",
    }  # fmt: skip


def test_every_taskd_variable_is_a_valid_setting(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {f"TASKD_{name.upper()}" for name in Settings.model_fields}
    fields |= {f"TASKD_DISPATCHER__{name.upper()}" for name in DispatcherConfig.model_fields}
    for name, service in compose["services"].items():
        env = _taskd_env(service)
        assert set(env) <= fields, f"{name}: unknown settings {set(env) - fields}"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        load_settings()  # raises ConfigError on an invalid value
        for key in env:
            monkeypatch.delenv(key)


def test_services_reach_kafka_on_its_internal_listener(compose: dict[str, Any]) -> None:
    kafka_env = _env(compose["services"]["kafka"])
    advertised = dict(
        reversed(item.split("://")) for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    for name in ("topics", "dispatcher", "agent"):
        bootstrap = _taskd_env(compose["services"][name])["TASKD_BOOTSTRAP_SERVERS"]
        assert advertised.get(bootstrap) == kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"], name


def test_host_reaches_kafka_with_default_settings(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    default_host, default_port = Settings().bootstrap_servers.split(":")
    advertised = _env(kafka)["KAFKA_ADVERTISED_LISTENERS"]
    assert f"EXTERNAL://{default_host}:{default_port}" in advertised
    listener_port = int(re.search(r"EXTERNAL://:(\d+)", _env(kafka)["KAFKA_LISTENERS"])[1])
    assert _published(kafka)[listener_port] == int(default_port)


def test_kafka_image_matches_the_pinned_version(compose: dict[str, Any]) -> None:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    pinned = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert pinned is not None
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{pinned[1]}"


def test_prometheus_scrapes_the_ports_the_code_serves(compose: dict[str, Any]) -> None:
    dispatcher = compose["services"]["dispatcher"]
    http_port = int(_taskd_env(dispatcher)["TASKD_HTTP_PORT"])
    assert _published(dispatcher)[http_port] == http_port
    assert _taskd_env(dispatcher)["TASKD_HTTP_HOST"] == "0.0.0.0"  # reachable from prometheus
    agent_env = _taskd_env(compose["services"]["agent"])
    assert agent_env["TASKD_AGENT_METRICS_HOST"] == "0.0.0.0"  # reachable from prometheus
    agent_port = int(agent_env["TASKD_AGENT_METRICS_PORT"])
    assert str(agent_port) in [str(p) for p in compose["services"]["agent"]["expose"]]
    volume = compose["services"]["prometheus"]["volumes"][0].split(":")[0]
    scrape = yaml.safe_load((ROOT / volume).read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    assert jobs["taskd-dispatcher"]["dns_sd_configs"][0] == {
        "names": ["dispatcher"],
        "type": "A",
        "port": http_port,
    }
    assert jobs["taskd-agents"]["dns_sd_configs"][0]["port"] == agent_port


def test_images_are_built_from_this_repository(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["taskd"]' in dockerfile
    for name in ("topics", "dispatcher", "agent"):
        assert compose["services"][name]["build"] == "."


def test_dispatchers_scale_to_three_each_with_its_host_port(compose: dict[str, Any]) -> None:
    """`--scale dispatcher=3`: three instances of one group, each reachable from the host."""
    dispatcher = compose["services"]["dispatcher"]
    http_port = int(_taskd_env(dispatcher)["TASKD_HTTP_PORT"])
    assert len(_published_ranges(dispatcher)[http_port]) >= 3
    assert "container_name" not in dispatcher  # a fixed name cannot scale
    shards = int(_env(compose["services"]["dispatcher"]).get("TASKD_SHARDS", "6"))
    assert shards % 3 == 0  # three instances own equal numbers of shards


def test_each_dispatcher_replica_is_a_static_member_under_its_own_host_name(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas differ by host name, and a restarted container keeps it: an id made of it is
    unique per replica and stable across its restarts, as static membership needs."""
    for name, value in _taskd_env(compose["services"]["dispatcher"]).items():
        monkeypatch.setenv(name, value)
    instance_id = load_settings().dispatcher.instance_id
    assert instance_id == f"dispatcher-{socket.gethostname()}"


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository path mounted there ("./HOST:CONTAINER[:ro]")."""
    mounts = {}
    for entry in service.get("volumes", []):
        host, container, *_ = str(entry).split(":")
        if host.startswith("./"):
            mounts[container] = ROOT / host
    return mounts


def _in_container(mounts: dict[str, Path], path: str) -> Path | None:
    """The repository file a container sees at ``path``, through a mounted file or folder."""
    for container, host in mounts.items():
        if path == container:
            return host
        if path.startswith(container.rstrip("/") + "/"):
            return host / path[len(container.rstrip("/")) + 1 :]
    return None


def test_prometheus_loads_the_alert_rules_it_is_configured_with(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = _mounts(prometheus)
    (flag,) = [arg for arg in prometheus["command"] if arg.startswith("--config.file=")]
    config_path = flag.split("=", 1)[1]
    config_file = _in_container(mounts, config_path)
    assert config_file is not None and config_file.is_file()
    config = yaml.safe_load(config_file.read_text())
    rule_files = config["rule_files"]
    assert rule_files, "no alert rules"
    for rules in rule_files:
        inside = rules if rules.startswith("/") else str(Path(config_path).parent / rules)
        found = _in_container(mounts, inside)
        assert found is not None and found.is_file(), f"{rules} is not mounted"
        assert found == ROOT / "deploy" / "prometheus" / "alerts.yml"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    mounts = _mounts(grafana)
    provisioning = _in_container(mounts, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    prometheus_port = _published(compose["services"]["prometheus"])
    assert source["url"] == f"http://prometheus:{next(iter(prometheus_port))}"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "taskd.yml").read_text())[
        "providers"
    ]
    dashboards = _in_container(mounts, provider["options"]["path"])
    assert dashboards is not None and (dashboards / "taskd.json").is_file()
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _in_container(mounts, home) == dashboards / "taskd.json"
    for panel in json.loads((dashboards / "taskd.json").read_text())["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    assert "127.0.0.1:3000" in " ".join(str(port) for port in grafana["ports"])
