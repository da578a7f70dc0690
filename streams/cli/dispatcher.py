"""``taskd dispatcher``: run the dispatcher until SIGTERM or SIGINT, serving its HTTP views
(``/metrics``, ``/status``, ``/context``, a dashboard) on ``http_host:http_port``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from streams.adapters.dispatcher import Dispatcher, run_dispatcher
from streams.adapters.http import check_address
from streams.adapters.kafka import require_broker
from streams.adapters.logs import setup_logging
from streams.cli.context import settings_of

StrategyName = Literal[
    "round-robin",
    "weighted",
    "least-connections",
    "random",
    "power-of-two-choices",
    "consistent-hash",
    "capacity",
    "performance",
    "affinity",
    "packing",
    "round-robin-push",
    "random-push",
]
"""The choices of ``--strategy``: ``STRATEGY_NAMES`` (a test keeps the two the same)."""


def dispatcher(
    ctx: typer.Context,
    lease_ms: Annotated[
        int | None, typer.Option("--lease-ms", help="how long an agent may hold a task (ms)")
    ] = None,
    heartbeat_ms: Annotated[
        int | None, typer.Option("--heartbeat-ms", help="the agents' heartbeat interval (ms)")
    ] = None,
    suspect_after_ms: Annotated[
        int | None,
        typer.Option("--suspect-after-ms", help="silence before an agent is suspect (ms)"),
    ] = None,
    down_after_ms: Annotated[
        int | None,
        typer.Option("--down-after-ms", help="silence before its tasks go to others (ms)"),
    ] = None,
    max_held: Annotated[
        int | None, typer.Option("--max-held", help="tasks held before the task topics pause")
    ] = None,
    aging_ms: Annotated[
        int | None, typer.Option("--aging-ms", help="wait that raises a task one level (0: strict)")
    ] = None,
    no_capable_agent_ms: Annotated[
        int | None,
        typer.Option(
            "--no-capable-agent-ms",
            help="wait for an agent able to run a task before dead-lettering it (0: for ever)",
        ),
    ] = None,
    web: Annotated[
        bool | None,
        typer.Option(
            "--web/--no-web", help="serve /metrics, /status, /context and a dashboard on http_port"
        ),
    ] = None,
    events: Annotated[
        bool | None,
        typer.Option("--events/--no-events", help="write one lifecycle event per task to `events`"),
    ] = None,
    commit_interval_ms: Annotated[
        int | None,
        typer.Option(
            "--commit-interval-ms",
            help="how often work is made durable and inputs committed (ms)",
        ),
    ] = None,
    session_timeout_ms: Annotated[
        int | None,
        typer.Option(
            "--session-timeout-ms",
            help="silence after which a killed instance's shards go to the others (ms)",
        ),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--instance-id",
            help="static group membership: a restart under this id within the session "
            "timeout gets its shards back without a rebalance (unique per instance; "
            "{host} in it stands for the host name)",
        ),
    ] = None,
    prefetch_share: Annotated[
        float | None,
        typer.Option(
            "--prefetch-share",
            help="tasks sent to an agent beyond its slots, as a share of its capacity (0: none)",
        ),
    ] = None,
    strategy: Annotated[
        StrategyName | None,
        typer.Option(
            "--strategy",
            help="routing strategy; round-robin-push and random-push are the naive baselines",
        ),
    ] = None,
    loglevel: Annotated[
        Literal["debug", "info", "warning", "error"] | None,
        typer.Option("--loglevel", help="the log level (else TASKD_LOG_LEVEL, info)"),
    ] = None,
    log_format: Annotated[
        Literal["text", "json"] | None,
        typer.Option(
            "--log-format",
            help="json: one object per line (else TASKD_LOG_FORMAT, text)",
        ),
    ] = None,
) -> None:
    """Run the dispatcher: read tasks, results and heartbeats; dispatch to the agents.

    Every option not given comes from the settings' [dispatcher] table (TASKD_DISPATCHER__*,
    the TOML file), else its default: see docs/operations.md, Policies."""
    settings = settings_of(ctx)
    setup_logging(loglevel or settings.log_level, log_format or settings.log_format)
    given = {
        "lease_ms": lease_ms,
        "heartbeat_interval_ms": heartbeat_ms,
        "suspect_after_ms": suspect_after_ms,
        "down_after_ms": down_after_ms,
        "max_held": max_held,
        "aging_ms": aging_ms,
        "no_capable_agent_ms": no_capable_agent_ms,
        "web_enabled": web,
        "events_enabled": events,
        "commit_interval_ms": commit_interval_ms,
        "session_timeout_ms": session_timeout_ms,
        "instance_id": instance_id,
        "prefetch_share": prefetch_share,
        "strategy": strategy,
    }
    config = settings.dispatcher.overridden(given)
    web = config.web_enabled
    if web:  # a busy port: one line now, not a crash after the start-up
        check_address(settings.http_host, settings.http_port)
    require_broker(settings)  # no broker: one line within the connect timeout
    raise typer.Exit(run_dispatcher(Dispatcher(settings, config)))
