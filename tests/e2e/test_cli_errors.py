"""One error style for ``taskd``, run as a user types it (a subprocess): every command whose
broker cannot be reached says so in one line naming the address, within its connect timeout,
and exits 1; usage errors read the same way and exit 2; help shows no type noise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

import pytest

from streams.cli.dispatcher import StrategyName
from streams.core.routing.names import STRATEGY_NAMES
from streams.settings import Settings
from tests.adapters.test_client import closed_port

TASKD = Path(sys.executable).parent / "taskd"
MARGIN_S = 30.0
"""Slack over a connect timeout for the process to start and stop on a busy 2-core machine."""
TASK = '{"type": "resize", "priority": 1, "payload": {"w": 8, "h": 8}}\n'

NEEDS_THE_BROKER = [
    ["dispatcher"],
    ["agent", "--capacity", "1", "--handler", "streams.examples:work"],
    ["topics", "list"],
    ["topics", "create"],
    ["topics", "delete", "--yes"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["tail", "results"],
    ["submit", "-"],
    ["submit", "--wait", "-"],
]


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``taskd ARGS`` with no TASKD_* settings but ``env``; the result and its duration (s)."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TASKD_")}
    # free ports for a dispatcher's views and an agent's metrics, whatever else runs here
    ports = {"TASKD_HTTP_PORT": "0", "TASKD_AGENT_METRICS_PORT": "0"}
    started = time.monotonic()
    result = subprocess.run(
        [str(TASKD), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **ports, **(env or {})},
        timeout=120,
        check=False,
    )
    return result, time.monotonic() - started


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr (nothing on stdout): the error."""
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args", NEEDS_THE_BROKER, ids=" ".join)
def test_an_unreachable_broker_is_one_line_within_the_connect_timeout(args: list[str]) -> None:
    address = f"127.0.0.1:{closed_port()}"
    env = {"TASKD_BOOTSTRAP_SERVERS": address, "TASKD_CONNECT_TIMEOUT_MS": "2000"}
    result, took_s = run(*args, env=env, stdin=TASK)
    assert result.returncode == 1
    assert one_line(result).startswith(
        f"error: no Kafka broker reachable at {address} within 2 s (Connection refused)"
    )
    assert took_s < 2 + MARGIN_S


def test_the_default_connect_timeout_is_10_s_and_no_librdkafka_line_shows() -> None:
    address = f"127.0.0.1:{closed_port()}"
    result, took_s = run("topics", "list", env={"TASKD_BOOTSTRAP_SERVERS": address})
    assert result.returncode == 1
    line = one_line(result)  # librdkafka's connection retries stay off the terminal
    assert line.startswith(f"error: no Kafka broker reachable at {address} within 10 s")
    assert 10 <= took_s < 10 + MARGIN_S


def test_global_options_override_the_environment(topics: Settings) -> None:
    env = {
        "TASKD_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        "TASKD_TOPIC_PREFIX": topics.topic_prefix,
        "TASKD_SHARDS": str(topics.shards),
        "TASKD_DISPATCH_PARTITIONS": str(topics.dispatch_partitions),
    }
    result, _ = run("--bootstrap-servers", topics.bootstrap_servers, "topics", "list", env=env)
    assert result.returncode == 0, result.stderr
    assert f"{topics.topic_prefix}dispatch" in result.stdout and "missing" not in result.stdout

    elsewhere = f"127.0.0.1:{closed_port()}"
    quick, took_s = run("-b", elsewhere, "--connect-timeout-ms", "1000", "dlq", "list", env=env)
    assert quick.returncode == 1
    assert one_line(quick).startswith(f"error: no Kafka broker reachable at {elsewhere} within 1 s")
    assert took_s < 1 + MARGIN_S


def test_an_unreachable_dispatcher_is_one_line_for_agents_and_status() -> None:
    port = closed_port()
    for command in ("agents", "status"):
        result, took_s = run(command, env={"TASKD_HTTP_PORT": str(port)})
        assert result.returncode == 1
        line = one_line(result)
        assert line.startswith(f"error: cannot reach the dispatcher at http://127.0.0.1:{port}/")
        assert "Connection refused" in line and "is taskd dispatcher running?" in line
        assert took_s < 10 + MARGIN_S


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["topics", "lst"], "error: no such command 'lst'. Did you mean 'list'?"),
        (["--nope"], "error: no such option: --nope"),
        (["agent", "--handler", "streams.examples:work"], "error: --capacity is required"),
        (["agent", "--capacity", "many"], "error: invalid value for '--capacity'"),
        (["dispatcher", "--strategy", "fastest"], "error: invalid value for '--strategy'"),
        (["tail"], "error: KIND is required"),
        (["tail", "tasks"], "error: invalid value for KIND: one of: results"),
        (["dlq", "list", "--reason", "BORED"], "error: invalid value for '--reason'"),
        (["status", "--url", "file:///etc/passwd"], "error: invalid value for --url"),
    ],
)
def test_a_usage_error_is_one_line_in_the_same_style_and_exit_2(args: list[str], says: str) -> None:
    result, _ = run(*args)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(says), line
    assert line.endswith("--help)")  # names the help to read


def _commands() -> list[list[str]]:
    groups = {"topics": ["create", "list", "delete"], "dlq": ["list", "replay"]}
    single = ["submit", "simulate", "agent", "agents", "status", "tail", "dispatcher"]
    return [[]] + [[name] for name in single] + [[g, c] for g, cs in groups.items() for c in cs]


def test_help_is_clean() -> None:
    helps = {}
    for command in _commands():
        result, _ = run(*command, "--help")
        assert result.returncode == 0, result.stderr
        helps[" ".join(command)] = result.stdout
    for name, text in helps.items():
        noise = re.findall(r"<(?:bool|int|str|float|path|list\[str\])>", text)
        assert not noise, f"taskd {name} --help shows {noise}"
        assert "\x1b" not in text and "╭" not in text, f"taskd {name} --help is not plain text"
    assert "--bootstrap-servers HOST:PORT" in helps[""]
    assert "--connect-timeout-ms MS" in helps[""]
    dispatcher = helps["dispatcher"]
    assert "--strategy [round-robin|weighted|" in dispatcher and "|random-push]" in dispatcher
    assert "--loglevel [debug|info|warning|error]" in helps["dispatcher"]
    assert "--web / --no-web" in helps["dispatcher"]  # a flag: no value shown
    assert re.search(r"--capacity INTEGER .*\[required\]", helps["agent"])
    assert "--reason [MALFORMED|EXPIRED|" in helps["dlq list"]
    assert "--scenario PATH" in helps["simulate"] and "[required]" in helps["simulate"]


def test_the_strategy_choices_are_the_strategy_names() -> None:
    assert get_args(StrategyName) == STRATEGY_NAMES


def test_a_group_without_its_command_shows_its_help() -> None:
    result, _ = run("topics")
    assert result.returncode == 2
    assert result.stderr.startswith("Usage: taskd topics [OPTIONS] COMMAND")
    assert "create" in result.stderr and "error:" not in result.stderr


def test_settings_mistakes_are_one_line_each_and_nothing_starts() -> None:
    env = {"TASKD_DISPATCHER__LEASE_MS": "-1", "TASKD_DISPATCHER__STRATEGY": "fastest"}
    result, _ = run("dispatcher", env=env)
    assert (result.returncode, result.stdout) == (1, "")
    head, *mistakes = result.stderr.strip().splitlines()
    assert head == "error: invalid settings (2 mistakes):"
    assert [line.split(":")[0] for line in mistakes] == [
        "  - dispatcher.lease_ms (env TASKD_DISPATCHER__LEASE_MS)",
        "  - dispatcher.strategy (env TASKD_DISPATCHER__STRATEGY)",
    ]
    single, _ = run("dispatcher", env={"TASKD_DISPATCHER__LEASE_MS": "-1"})
    assert one_line(single).startswith("error: invalid settings: dispatcher.lease_ms (env ")
