"""``taskd agents``: the agents a running dispatcher knows, read from its ``/context`` view.

The dispatcher is where an agent's state is decided (READY, DRAINING, SUSPECT after a silence,
DOWN with its tasks handed to others), so the table asks it rather than reading the registry
and heartbeat topics itself: no dispatcher running, no table (one line says so). With several
dispatcher instances every one knows every agent; ``in flight`` is what the instance asked has
in flight on each agent (the tasks of the shards it owns).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from streams.adapters.logs import plain
from streams.cli.context import settings_of
from streams.cli.status import fetch_view
from streams.cli.style import wide_console
from streams.errors import TaskdError

_MIN_WIDTH = 120
"""Columns the table is laid out for even when piped (rich would squeeze it to 80)."""
_STATE_STYLES = {"READY": "green", "DRAINING": "yellow", "SUSPECT": "yellow", "DOWN": "red"}


def agents(
    ctx: typer.Context,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per agent, as the dispatcher gives it")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="The dispatcher's HTTP address (default: settings http_host:http_port)"
        ),
    ] = None,
) -> None:
    """Show the agents the dispatcher knows: state, load, task types, skills, zone, heartbeat."""
    view = fetch_view(settings_of(ctx), url, "context")
    listed = view.get("agents")
    if not isinstance(listed, list):
        raise TaskdError("the dispatcher's /context lists no agents (is it a taskd dispatcher?)")
    rows = sorted(
        (entry for entry in listed if isinstance(entry, Mapping)), key=lambda e: str(e.get("id"))
    )
    if json_out:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no agents known to the dispatcher yet")
        return
    wide_console(_MIN_WIDTH, highlight=False).print(table(rows))
    ready = sum(row.get("state") == "READY" for row in rows)
    typer.echo(f"{len(rows)} agent(s), {ready} ready")


def table(rows: Sequence[Mapping[str, object]]) -> Table:
    """One row per agent: id, state, its capacity, in flight / slots, types, skills, zone,
    heartbeat age. In flight counts what the dispatcher sent and is not finished, prefetched
    tasks included, so it is shown against the slots it counts (capacity plus prefetch)."""
    grid = Table(
        "agent", "state", "capacity", "in flight / slots", "types", "skills", "zone",
        "last heartbeat",
    )  # fmt: skip
    grid.columns[0].overflow = "fold"
    for row in rows:
        state = str(row.get("state", "?"))
        cells = (  # Text, not markup: ids, types and zones come from the agents
            str(row.get("id", "?")),
            state,
            _count(row.get("capacity")),
            f"{_count(row.get('in_flight'))} / {_count(row.get('slots'))}",
            _names(row.get("task_types"), every="every type"),
            _names(row.get("skills"), every="-"),
            str(row.get("zone") or "-"),
            age(row.get("heartbeat_age_ms")),
        )
        styles = ["", _STATE_STYLES.get(state, "dim"), "", "", "", "", "", ""]
        pairs = zip(cells, styles, strict=True)
        grid.add_row(*(Text(plain(cell), style=style) for cell, style in pairs))
    return grid


def age(ms: object) -> str:
    """A heartbeat's age: ``0.4 s ago``, ``12 s ago``, ``3 min ago``; ``n/a`` when unknown."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
        return "n/a"
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.1f} s ago"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def _names(value: object, *, every: str) -> str:
    if not isinstance(value, list):
        return every
    return ", ".join(str(name) for name in value) or "-"


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "?"
