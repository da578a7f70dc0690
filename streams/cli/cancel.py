"""``taskd cancel ID...``: ask for tasks to be cancelled (a waiting task ends CANCELLED, a
running one is told to stop; ``docs/results.md``, *Cancelling*)."""

from __future__ import annotations

from typing import Annotated

import typer

from streams.adapters.client import TaskClient
from streams.adapters.kafka import require_broker
from streams.cli.context import settings_of


def cancel(
    ctx: typer.Context,
    task_ids: Annotated[list[str], typer.Argument(help="the ids of the tasks to cancel")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="why, in your words (the dispatcher logs it)")
    ] = None,
) -> None:
    """Cancel tasks: each request is on the broker when this returns (it prints one line per
    task); the tasks' outcomes then say CANCELLED, unless one ended first."""
    settings = settings_of(ctx)
    require_broker(settings)  # no broker: one line within the connect timeout
    with TaskClient(settings) as client:
        for task_id in task_ids:
            client.cancel(task_id, reason=reason)
            typer.echo(f"cancel of {task_id} sent")
