"""``taskd dlq list|replay``: show the dead letters, and send their tasks back to be run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from streams.adapters.client import TaskClient, replay_count
from streams.adapters.dlq import (
    DlqEntry,
    ReplayPlan,
    plan_replay,
    read_dead_letters,
    select,
)
from streams.adapters.kafka import require_broker
from streams.cli.context import settings_of
from streams.cli.since import SINCE_HELP, since_option_ms
from streams.cli.style import wide_console
from streams.core.model import DeadLetterReason
from streams.settings import Settings

dlq_app = typer.Typer(help="List and replay the dead letters.", no_args_is_help=True)

_MIN_WIDTH = 160
"""Columns the table is laid out for even when piped (rich would squeeze it to 80)."""
_ERROR_CHARS = 80
"""An error longer than this is cut in the table (``--json`` shows it whole)."""

Reason = Annotated[
    DeadLetterReason | None,
    typer.Option("--reason", "-r", case_sensitive=False, help="Only dead letters of this reason"),
]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        "-s",
        help=f"Only those dead-lettered since: {SINCE_HELP}",
    ),
]


@dlq_app.command("list")
def list_(
    ctx: typer.Context,
    reason: Reason = None,
    since: Since = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Show at most N (oldest first)")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of the table")
    ] = False,
) -> None:
    """Show the dead letters, oldest first; records that do not decode show as undecodable."""
    entries = _selected(settings_of(ctx), reason, since)
    shown = entries[:limit] if limit else entries
    if json_out:
        for entry in shown:
            typer.echo(json.dumps(entry_json(entry), ensure_ascii=False))
        return
    if not shown:
        typer.echo("no dead letters")
        return
    wide_console(_MIN_WIDTH, highlight=False).print(_table(shown))
    typer.echo(f"{len(shown)} of {len(entries)} dead letter(s) shown")


_REPLAY_HELP = (
    "Send the selected dead letters' tasks back to the topics of their priority.\n\n"
    "Each task keeps its task id, starts again at attempt 0 and carries the header taskd-replay "
    "one higher, so the dispatcher does not drop it as a duplicate.\n\n"
    "NOT idempotent: the dead letters stay where they are, and every run sends every selected "
    "one again. Narrow the selection with --reason and --since, check it with --dry-run first."
)


@dlq_app.command("replay", help=_REPLAY_HELP)
def replay(
    ctx: typer.Context,
    reason: Reason = None,
    since: Since = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be replayed; send nothing")
    ] = False,
) -> None:
    """Send the selected dead letters' tasks back to their priority topics (not idempotent)."""
    settings = settings_of(ctx)
    plan = plan_replay(_selected(settings, reason, since))
    _print_skipped(plan)
    if dry_run:
        for task in plan.tasks:
            typer.echo(f"would replay {task.task_id} (replay {replay_count(task)})")
        typer.echo(f"would replay {len(plan.tasks)} task(s); nothing sent (--dry-run)")
        return
    with TaskClient(settings) as client:
        report = client.submit_many(plan.tasks)
    typer.echo(f"replayed {report.delivered} task(s)")
    if report.failed or report.unconfirmed:
        typer.echo(
            f"{report.failed + report.unconfirmed} task(s) not replayed: {report.first_error}",
            err=True,
        )
        raise typer.Exit(1)


def entry_json(entry: DlqEntry) -> dict[str, Any]:
    """One dead-letter record as ``list --json`` prints it (times in ms since the epoch)."""
    row: dict[str, Any] = {"partition": entry.partition, "offset": entry.offset}
    letter = entry.letter
    if letter is None:
        return row | {"undecodable": True, "error": entry.problem, "dead_at": entry.dead_at_ms}
    task = letter.task
    row |= {
        "undecodable": False,
        "task_id": None if task is None else task.task_id,
        "type": None if task is None else task.type,
        "priority": None if task is None else task.priority,
        "tenant": None if task is None else task.tenant,
        "replay": None if task is None else replay_count(task),
        "raw_bytes": None if letter.raw is None else len(letter.raw),
    }
    return row | {
        "reason": letter.reason.value,
        "attempts": letter.attempts,
        "error": letter.error,
        "dead_at": letter.dead_at,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
    }


def _selected(
    settings: Settings, reason: DeadLetterReason | None, since: str | None
) -> list[DlqEntry]:
    since_ms = None if since is None else since_option_ms(since)
    require_broker(settings)
    return select(read_dead_letters(settings), reason=reason, since_ms=since_ms)


def _table(entries: list[DlqEntry]) -> Table:
    table = Table("task_id", "type", "priority", "tenant", "reason", "attempts", "error", "dead_at")
    table.columns[0].overflow = "fold"
    for entry in entries:
        table.add_row(*_cells(entry))
    return table


def _cells(entry: DlqEntry) -> tuple[str, ...]:
    dead_at = _iso(entry.dead_at_ms)
    letter = entry.letter
    if letter is None:
        return ("-", "-", "-", "-", "undecodable", "-", _cut(entry.problem or ""), dead_at)
    task = letter.task
    if task is None:
        raw = f"({len(letter.raw or b'')} raw bytes)"
        who = (raw, "-", "-", "-")
    else:
        who = (task.task_id, task.type, str(task.priority), task.tenant)
    return (*who, letter.reason.value, str(letter.attempts), _cut(letter.error), dead_at)


def _print_skipped(plan: ReplayPlan) -> None:
    if plan.malformed:
        typer.echo(f"{plan.malformed} malformed records cannot be replayed; see taskd dlq list")
    if plan.undecodable:
        typer.echo(f"{plan.undecodable} undecodable records cannot be replayed; see taskd dlq list")
    if plan.superseded:
        typer.echo(f"{plan.superseded} older dead letter(s) of the same tasks skipped")


def _cut(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def _iso(time_ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):  # not a time a dispatcher would write
        return f"{time_ms} ms"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
