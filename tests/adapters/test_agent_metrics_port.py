"""Where an agent serves its /metrics: the configured host, the configured port or, when that
one is taken (a second agent on the host), the next free one; one error line when none is."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from prometheus_client import CollectorRegistry

from streams.adapters.metrics import METRICS_PORT_TRIES, serve_metrics
from streams.errors import ConfigError
from streams.settings import load_settings


@contextmanager
def _taken(*ports: int) -> Iterator[None]:
    """Listen on ``ports`` of 127.0.0.1 for the duration, as other agents would."""
    with ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", port))
            sock.listen()
        yield


def _free_run(length: int) -> int:
    """The first of ``length`` consecutive ports that are free now (on 127.0.0.1)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        if first + length <= 65535 and all(_free(first + i) for i in range(length)):
            return first
    raise AssertionError(f"no {length} consecutive free ports found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_configured_port_is_used_when_free() -> None:
    port = _free_run(1)
    server = serve_metrics(CollectorRegistry(), port=port, host="127.0.0.1", tries=5)
    try:
        assert server.port == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.close()


def test_a_taken_port_moves_the_agent_to_the_next_free_one() -> None:
    first = _free_run(3)
    with _taken(first, first + 1):
        server = serve_metrics(CollectorRegistry(), port=first, host="127.0.0.1", tries=5)
        try:
            assert server.port == first + 2
        finally:
            server.close()


def test_every_port_taken_is_one_error_line_saying_how_to_choose() -> None:
    first = _free_run(2)
    with _taken(first, first + 1), pytest.raises(ConfigError) as raised:
        serve_metrics(CollectorRegistry(), port=first, host="127.0.0.1", tries=2)
    message = str(raised.value)
    assert "\n" not in message
    assert f"127.0.0.1:{first}-{first + 1}" in message
    assert "TASKD_AGENT_METRICS_PORT" in message and "0 for any free one" in message


def test_a_single_try_names_just_that_port() -> None:
    port = _free_run(1)
    with _taken(port), pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}: "):
        serve_metrics(CollectorRegistry(), port=port, host="127.0.0.1")


def test_an_address_that_cannot_be_bound_fails_at_once() -> None:
    with pytest.raises(ConfigError, match=r"cannot serve agent metrics on 192\.0\.2\.1:"):
        serve_metrics(CollectorRegistry(), port=_free_run(1), host="192.0.2.1", tries=5)


def test_port_zero_is_any_free_port() -> None:
    server = serve_metrics(CollectorRegistry(), port=0, host="127.0.0.1", tries=5)
    try:
        assert server.port > 0
    finally:
        server.close()


def test_the_host_is_a_setting_with_a_local_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().agent_metrics_host == "127.0.0.1"
    monkeypatch.setenv("TASKD_AGENT_METRICS_HOST", "0.0.0.0")
    assert load_settings().agent_metrics_host == "0.0.0.0"
    assert load_settings().dispatch_partitions <= METRICS_PORT_TRIES
