"""The ``taskd`` command line: one entry point for every job of Task Distributor."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from streams.adapters.kafka import LIBRDKAFKA_LOG
from streams.cli.agent import agent
from streams.cli.agents import agents
from streams.cli.bench import bench
from streams.cli.cancel import cancel
from streams.cli.context import CliState
from streams.cli.demo import demo
from streams.cli.dispatcher import dispatcher
from streams.cli.dlq import dlq_app
from streams.cli.plan import plan_command
from streams.cli.simulate import simulate
from streams.cli.status import status
from streams.cli.style import USAGE_EXIT, TidyGroup, fail, usage_message
from streams.cli.submit import submit
from streams.cli.tail import tail
from streams.cli.topics import topics_app
from streams.errors import TaskdError

app = typer.Typer(
    name="taskd",
    help="Task Distributor: Kafka-native distribution of tasks across worker agents.\n\n"
    "Settings, strongest first: these options, TASKD_* variables, the settings file "
    "(--config), the defaults (README, Settings).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=TidyGroup,
)
app.add_typer(topics_app, name="topics", short_help="Create, list and delete the topics.")
app.add_typer(dlq_app, name="dlq", short_help="List and replay the dead letters.")
app.command("submit", short_help="Submit tasks from JSON lines (a file or stdin).")(submit)
app.command("cancel", short_help="Cancel tasks: waiting ones end, running ones stop.")(cancel)
app.command("simulate", short_help="Compare strategies on a simulated fleet.")(simulate)
app.command("plan", short_help="Size a fleet for an SLO by simulation.")(plan_command)
app.command("agent", short_help="Run a worker agent.")(agent)
app.command("agents", short_help="Show the agents the dispatcher knows.")(agents)
app.command("status", short_help="Show the dispatcher's progress.")(status)
app.command("tail", short_help="Print a topic's records as JSON lines.")(tail)
app.command("dispatcher", short_help="Run the dispatcher.")(dispatcher)
app.command("demo", short_help="Run the reference workload live (from a checkout).")(demo)
app.command("bench", short_help="Benchmark us against the peers (from a checkout).")(bench)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (else $TASKD_CONFIG)"),
    ] = None,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers",
            "-b",
            metavar="HOST:PORT[,...]",
            help="Kafka bootstrap servers (else $TASKD_BOOTSTRAP_SERVERS, 127.0.0.1:9092)",
        ),
    ] = None,
    connect_timeout_ms: Annotated[
        int | None,
        typer.Option(
            "--connect-timeout-ms",
            metavar="MS",
            help="how long a command waits for the broker (or taskd status for the dispatcher) "
            "before it gives up (else $TASKD_CONNECT_TIMEOUT_MS, 10000)",
        ),
    ] = None,
) -> None:
    given: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "connect_timeout_ms": connect_timeout_ms,
    }
    overrides = {name: value for name, value in given.items() if value is not None}
    ctx.obj = CliState(config_file=config, overrides=overrides)


def main() -> None:
    """Run the CLI. Every error is one ``error: ...`` line on stderr: ours exit 1, usage
    errors 2 (:mod:`streams.cli.style`)."""
    # librdkafka's own lines (connection retries) stay off the terminal of a one-shot command:
    # its errors say what failed. The dispatcher and the agents log them (setup_logging).
    LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
    try:
        code = app(standalone_mode=False, prog_name="taskd")
    except TaskdError as error:
        fail(str(error))
    except typer.Abort:
        fail("aborted", 130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as error:  # click's usage errors and the like
        code = getattr(error, "exit_code", 1)
        if type(error).__name__ == "NoArgsIsHelpError":  # `taskd topics`: the help, as click
            typer.echo(error.format_message(), err=True)
            sys.exit(code)
        fail(usage_message(error) if code == USAGE_EXIT else error.format_message(), code)
    if isinstance(code, int) and code:
        sys.exit(code)
