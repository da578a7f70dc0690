"""The dispatcher's HTTP views behind a bearer token (``http_token``), as a user reaches them:
with curl-like requests and with ``taskd status``; ``/metrics`` open or not (``http_metrics_open``).
The wiring into a running ``taskd dispatcher`` is checked in tests/e2e/test_secure_broker.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streams.adapters.http import StatusServer
from tests.e2e.test_status_cli import ServerThread, taskd

TOKEN = "s3cret-token-for-the-views"
VIEW = {"agent": "task-distributor", "status": "idle", "progress": {"tasks_distributed": "7"}}


def _served(*, metrics_open: bool) -> Iterator[StatusServer]:
    server = StatusServer(
        "127.0.0.1",
        0,
        status=lambda: VIEW,
        context=lambda: {"agents": []},
        registry=CollectorRegistry(),
        token=TOKEN,
        metrics_open=metrics_open,
    )
    background = ServerThread(server)
    try:
        yield server
    finally:
        background.close()


@pytest.fixture
def guarded() -> Iterator[StatusServer]:
    yield from _served(metrics_open=True)


@pytest.fixture
def all_guarded() -> Iterator[StatusServer]:
    yield from _served(metrics_open=False)


def get(url: str, token: str | None = None) -> int:
    """The HTTP status ``url`` answers a GET with (and the bearer ``token``, if given)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_views_answer_only_with_the_token_and_metrics_stay_open(
    guarded: StatusServer,
) -> None:
    for view in ("/status", "/context"):
        assert get(guarded.url + view) == 401
        assert get(guarded.url + view, "wrong") == 401
        assert get(guarded.url + view, TOKEN[:-1]) == 401
        assert get(guarded.url + view, TOKEN) == 200
    assert get(guarded.url + "/metrics") == 200, "Prometheus scrapes without the token"
    assert get(guarded.url + "/") == 200, "the dashboard's page holds no figures"


def test_metrics_can_be_closed_too(all_guarded: StatusServer) -> None:
    assert get(all_guarded.url + "/metrics") == 401
    assert get(all_guarded.url + "/metrics", TOKEN) == 200


def test_a_refusal_says_what_is_wanted(guarded: StatusServer) -> None:
    request = urllib.request.Request(guarded.url + "/status")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert "TASKD_HTTP_TOKEN" in json.loads(refused.value.read())["error"]


def test_taskd_status_sends_the_token_of_the_settings(guarded: StatusServer) -> None:
    shown = taskd("status", "--json", "--url", guarded.url, env={"TASKD_HTTP_TOKEN": TOKEN})
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == VIEW
    assert TOKEN not in shown.stdout + shown.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [({}, "set TASKD_HTTP_TOKEN"), ({"TASKD_HTTP_TOKEN": "wrong"}, "TASKD_HTTP_TOKEN is not it")],
)
def test_taskd_status_without_the_right_token_says_so_in_one_line(
    guarded: StatusServer, env: dict[str, str], says: str
) -> None:
    refused = taskd("status", "--url", guarded.url, env=env)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "401" in lines[0] and says in lines[0]
    assert TOKEN not in refused.stderr


def test_taskd_agents_sends_the_token_too(guarded: StatusServer) -> None:
    shown = taskd("agents", "--url", guarded.url, env={"TASKD_HTTP_TOKEN": TOKEN})
    assert shown.returncode == 0, shown.stderr
    refused = taskd("agents", "--url", guarded.url)
    assert refused.returncode == 1 and "set TASKD_HTTP_TOKEN" in refused.stderr
