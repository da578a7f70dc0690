"""``taskd topics create|list|delete``: the architecture's topics on the cluster."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams.adapters.admin import (
    TopicReport,
    TopicState,
    create_topics,
    delete_groups,
    delete_topics,
    list_topics,
    topics_under,
)
from streams.adapters.kafka import require_broker
from streams.cli.context import settings_of
from streams.settings import Settings

topics_app = typer.Typer(
    help="Create, list and delete the topics of the architecture.", no_args_is_help=True
)
_out = Console()


@topics_app.command("create")
def create(ctx: typer.Context) -> None:
    """Create every missing topic (idempotent: a second run changes nothing and says so)."""
    reports = create_topics(_reachable(settings_of(ctx)))
    _print(reports)
    created = sum(report.state is TopicState.CREATED for report in reports)
    differs = [report.name for report in reports if report.state is TopicState.DIFFERS]
    if created:
        _out.print(f"created {created} topic(s), {len(reports) - created} already existed")
    else:
        _out.print(f"nothing to do: all {len(reports)} topics already exist")
    if differs:
        _out.print(
            f"[yellow]warning:[/yellow] partition counts differ from the settings: {differs}"
        )


@topics_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Show the architecture's topics with their partition counts."""
    _print(list_topics(_reachable(settings_of(ctx))))


@topics_app.command("delete")
def delete(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    prefix: Annotated[
        str | None,
        typer.Option("--prefix", help="the topic prefix to clean up (default: the settings')"),
    ] = None,
) -> None:
    """Delete every topic and consumer group under the topic prefix (--prefix, else
    TASKD_TOPIC_PREFIX or the settings file): what a finished run, or an interrupted one, left
    behind. Their records are gone for good."""
    given = {} if prefix is None else {"topic_prefix": prefix}
    settings = _reachable(settings_of(ctx, **given))
    names = topics_under(settings)
    if not names:
        _out.print(f"no topic under the prefix {settings.topic_prefix!r}")
    else:
        _out.print(f"{len(names)} topic(s) under {settings.topic_prefix!r}: {', '.join(names)}")
        if not yes and not typer.confirm("delete them and their records?"):
            raise typer.Exit(1)
        deleted = delete_topics(settings)
        _out.print(f"deleted {len(deleted)} topic(s)")
    groups, kept = delete_groups(settings)
    if groups:
        _out.print(f"deleted {len(groups)} consumer group(s): {', '.join(groups)}")
    for line in kept:
        _out.print(f"[yellow]kept[/yellow] {line}")


def _reachable(settings: Settings) -> Settings:
    """``settings``, once a broker answered within the connect timeout (else one line)."""
    require_broker(settings)
    return settings


def _print(reports: list[TopicReport]) -> None:
    table = Table("topic", "partitions", "state")
    for report in reports:
        state = "missing" if report.partitions == 0 else report.state.value
        if report.state is TopicState.DIFFERS and report.partitions:
            state += f" (settings: {report.wanted_partitions})"
        table.add_row(report.name, str(report.partitions), state)
    _out.print(table)
