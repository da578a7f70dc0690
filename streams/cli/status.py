"""``taskd status``: the dispatcher's progress, read from its ``/status`` view."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from streams.adapters.kafka import connect_timeout_s
from streams.cli.context import settings_of
from streams.errors import TaskdError
from streams.settings import Settings

_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""Bind-all addresses in the settings, and where a client on this machine reaches them."""

_PROGRESS = (
    ("tasks distributed", "tasks_distributed"),
    ("avg queue time", "avg_queue_time"),
    ("load variance", "load_variance"),
    ("deadline success", "deadline_success"),
)
_STATE_STYLES = {"distributing": "green", "idle": "dim", "starting": "yellow", "draining": "yellow"}


def status(
    ctx: typer.Context,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the progress JSON as the dispatcher gives it")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="The dispatcher's HTTP address (default: settings http_host:http_port)"
        ),
    ] = None,
) -> None:
    """Show the dispatcher's progress: tasks distributed, queue time, load variance, deadlines,
    and what limits throughput now."""
    view = fetch_view(settings_of(ctx), url, "status")
    if json_out:
        typer.echo(json.dumps(view, ensure_ascii=False))
        return
    Console(highlight=False).print(render(view))


def fetch_view(settings: Settings, url: str | None, view: str) -> dict[str, object]:
    """The dispatcher's ``/view`` (at ``url``, default from the settings) as JSON, within the
    connect timeout, with the views' token; TaskdError saying why it could not."""
    base = url if url is not None else default_url(settings)
    timeout_s = connect_timeout_s(settings)
    return fetch_status(view_url(base, view), timeout_s=timeout_s, token=settings.views_token())


def default_url(settings: Settings) -> str:
    """``http://host:port`` of the dispatcher's views from the settings (bind-all: loopback)."""
    host = _ANY_ADDRESS.get(settings.http_host, settings.http_host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.http_port}"


def view_url(base: str, view: str) -> str:
    """The URL of the dispatcher's ``/view`` under ``base``, which may end with ``/status`` or
    ``/context`` (either is replaced); http(s) only."""
    if urlsplit(base).scheme not in ("http", "https"):
        raise typer.BadParameter(
            f"expected an http:// or https:// URL, got {base!r}", param_hint="--url"
        )
    trimmed = base.rstrip("/")
    for known in _VIEWS:
        trimmed = trimmed.removesuffix(f"/{known}")
    return f"{trimmed}/{view}"


_VIEWS = ("status", "context", "scale")


def fetch_status(url: str, *, timeout_s: float, token: str | None = None) -> dict[str, object]:
    """GET ``url`` (no proxy), with ``Authorization: Bearer <token>`` when given, and decode its
    JSON object; TaskdError saying why it could not."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code == 401:
            raise TaskdError(
                f"{url} answered 401 Unauthorized: the dispatcher asks for its token; "
                + ("TASKD_HTTP_TOKEN is not it" if token else "set TASKD_HTTP_TOKEN to it")
            ) from error
        raise TaskdError(
            f"{url} answered {error.code} {error.reason} (is it a taskd dispatcher?)"
        ) from error
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise TaskdError(
            f"cannot reach the dispatcher at {url}: {_reason(error)} (is taskd dispatcher "
            "running? its address: --url, or http_host:http_port of the settings)"
        ) from error
    try:
        view = json.loads(body)
    except ValueError as error:
        raise TaskdError(f"{url} did not answer JSON (is it a taskd dispatcher?)") from error
    if not isinstance(view, dict):
        raise TaskdError(f"{url} answered JSON that is not an object (is it a taskd dispatcher?)")
    return view


def _reason(error: BaseException) -> str:
    """The innermost readable cause: 'Connection refused', 'timed out', ..."""
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause) or type(cause).__name__


def render(view: Mapping[str, object]) -> Table:
    """The progress as a two-column grid; missing fields show as n/a (any dispatcher version)."""
    progress = _mapping(view.get("progress"))
    details = _mapping(view.get("details"))
    state = str(view.get("status", "unknown"))
    grid = Table.grid(padding=(0, 2))
    grid.add_row(
        Text(str(view.get("agent", "task-distributor")), style="bold"),
        Text(state, style=_STATE_STYLES.get(state, "red")),
    )
    for label, key in _PROGRESS:
        grid.add_row(label, Text(str(progress.get(key, "n/a")), style="bold"))
    for label, text in _detail_rows(details):
        grid.add_row(Text(label, style="dim"), Text(text, style="dim"))
    for label, text in group_rows(_mapping(view.get("group"))):
        grid.add_row(Text(label, style="dim"), Text(text, style="dim"))
    return grid


def group_rows(group: Mapping[str, object]) -> list[tuple[str, str]]:
    """A row per dispatcher instance and one of sums, when more than one runs (``/status``
    of any instance shows the whole group)."""
    instances = group.get("instances")
    if not isinstance(instances, list) or len(instances) < 2:
        return []
    rows = [
        (
            f"instance {entry.get('instance')}",
            f"shards {entry.get('shards')}: {entry.get('held')} held, "
            f"{entry.get('in_flight')} in flight, {entry.get('completed')} completed"
            + (" (silent)" if entry.get("silent") else ""),
        )
        for entry in instances
        if isinstance(entry, Mapping)
    ]
    totals = _mapping(group.get("totals"))
    rows.append(
        (
            "group",
            f"{totals.get('instances')} instances, {totals.get('held')} held, "
            f"{totals.get('in_flight')} in flight, {totals.get('completed')} completed",
        )
    )
    return rows


def _detail_rows(details: Mapping[str, object]) -> list[tuple[str, str]]:
    if not details:
        return []
    agents = _mapping(details.get("agents"))
    queue = _mapping(details.get("queue_ms"))
    dead = _mapping(details.get("dead_lettered"))
    dead_total = sum(count for count in dead.values() if isinstance(count, int))
    reasons = ", ".join(f"{reason} {count}" for reason, count in dead.items() if count)
    rows = [
        ("tasks", f"{_n(details.get('tasks'))} received, {_n(details.get('completed'))} completed"),
        ("dead-lettered", f"{dead_total:,}" + (f" ({reasons})" if reasons else "")),
        ("queue", f"{_n(details.get('held'))} held, {_n(details.get('in_flight'))} in flight"),
        ("agents", f"{_n(agents.get('ready'))} of {_n(agents.get('total'))} ready"),
        ("utilization", _pct(details.get("utilization"))),
        ("p99 queue time", f"{_n(queue.get('p99'))} ms"),
    ]
    bottleneck = _mapping(details.get("bottleneck")).get("verdict")
    if isinstance(bottleneck, str):
        rows.append(("bottleneck", bottleneck))
    orphans = _mapping(details.get("held_without_capable_agent"))
    if orphans:
        waiting = ", ".join(f"{kind} {_n(count)}" for kind, count in sorted(orphans.items()))
        rows.append(("waiting for an agent able to run them", waiting))
    return rows


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _n(value: object) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "n/a"


def _pct(value: object) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "n/a"
