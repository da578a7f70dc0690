"""``taskd tail results|replies|events|dlq``: the records of a topic as JSON lines, for people
and for jq (the topics hold Avro, which kcat and console consumers print as bytes)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from streams.adapters.kafka import require_broker
from streams.adapters.tail import KINDS
from streams.adapters.tail import tail as read_topic
from streams.cli.context import settings_of
from streams.cli.since import SINCE_HELP, since_option_ms


def tail(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"the topic: {', '.join(KINDS)}")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new records until Ctrl-C")
    ] = False,
    task: Annotated[
        str | None, typer.Option("--task", help="only the records of this task id")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help=f"only the records written since then: {SINCE_HELP}",
        ),
    ] = None,
) -> None:
    """Print a topic's records as JSON lines, oldest first in each partition."""
    if kind not in KINDS:
        raise typer.BadParameter(f"one of: {', '.join(KINDS)}", param_hint="KIND")
    since_ms = None if since is None else since_option_ms(since)
    settings = settings_of(ctx)
    require_broker(settings)
    try:
        for row in read_topic(settings, kind, follow=follow, since_ms=since_ms):
            if task is None or _task_id(row) == task:
                typer.echo(json.dumps(row, ensure_ascii=False))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _task_id(row: dict[str, object]) -> object:
    inner = row.get("task")
    if isinstance(inner, dict):
        return inner.get("task_id")
    return row.get("task_id")
