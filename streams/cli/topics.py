"""``taskd topics create|list``: the architecture's topics on the cluster."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from streams.adapters.admin import TopicReport, TopicState, create_topics, list_topics
from streams.cli.context import settings_of

topics_app = typer.Typer(
    help="Create and list the topics of the architecture.", no_args_is_help=True
)
_out = Console()


@topics_app.command("create")
def create(ctx: typer.Context) -> None:
    """Create every missing topic (idempotent: a second run changes nothing and says so)."""
    reports = create_topics(settings_of(ctx))
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
    _print(list_topics(settings_of(ctx)))


def _print(reports: list[TopicReport]) -> None:
    table = Table("topic", "partitions", "state")
    for report in reports:
        state = "missing" if report.partitions == 0 else report.state.value
        if report.state is TopicState.DIFFERS and report.partitions:
            state += f" (settings: {report.wanted_partitions})"
        table.add_row(report.name, str(report.partitions), state)
    _out.print(table)
