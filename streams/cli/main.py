"""The ``taskd`` command line: one entry point for every job of Task Distributor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streams.cli.agent import agent
from streams.cli.bench import bench
from streams.cli.context import CliState
from streams.cli.demo import demo
from streams.cli.dispatcher import dispatcher
from streams.cli.dlq import dlq_app
from streams.cli.simulate import simulate
from streams.cli.status import status
from streams.cli.submit import submit
from streams.cli.tail import tail
from streams.cli.topics import topics_app
from streams.errors import TaskdError

app = typer.Typer(
    name="taskd",
    help="Task Distributor: Kafka-native distribution of tasks across worker agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(topics_app, name="topics")
app.add_typer(dlq_app, name="dlq")
app.command("submit")(submit)
app.command("simulate")(simulate)
app.command("agent")(agent)
app.command("status")(status)
app.command("tail")(tail)
app.command("dispatcher")(dispatcher)
app.command("demo")(demo)
app.command("bench")(bench)

_err = Console(stderr=True, soft_wrap=True, force_terminal=sys.stderr.isatty())
"""Error lines: red on a terminal; plain text into a pipe or a file (a service's log) even with
``FORCE_COLOR`` set, which rich would otherwise obey with escape sequences."""


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (else $TASKD_CONFIG)"),
    ] = None,
) -> None:
    ctx.obj = CliState(config_file=config)


def main() -> None:
    """Run the CLI; a TaskdError becomes one red line on stderr and exit status 1."""
    try:
        code = app(standalone_mode=False)
    except TaskdError as error:
        _err.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(1)
    except typer.Abort:
        _err.print("aborted")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as error:  # click's usage errors carry their own exit codes
        show = getattr(error, "show", None)
        if callable(show):
            show()
            sys.exit(getattr(error, "exit_code", 2))
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
