"""``taskd dispatcher``: run the dispatcher until SIGTERM or SIGINT, serving its HTTP views
(``/metrics``, ``/status``, ``/context``, a dashboard) on ``http_host:http_port``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from streams.adapters.dispatcher import Dispatcher, DispatcherConfig, run_dispatcher
from streams.adapters.http import check_address
from streams.adapters.kafka import require_broker
from streams.adapters.logs import setup_logging
from streams.cli.context import settings_of

_DEFAULTS = DispatcherConfig()

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
    "round-robin-push",
    "random-push",
]
"""The choices of ``--strategy``: ``STRATEGY_NAMES`` (a test keeps the two the same)."""


def dispatcher(
    ctx: typer.Context,
    lease_ms: Annotated[
        int, typer.Option("--lease-ms", help="how long an agent may hold a task (ms)")
    ] = _DEFAULTS.lease_ms,
    heartbeat_ms: Annotated[
        int, typer.Option("--heartbeat-ms", help="the agents' heartbeat interval (ms)")
    ] = _DEFAULTS.heartbeat_interval_ms,
    suspect_after_ms: Annotated[
        int, typer.Option("--suspect-after-ms", help="silence before an agent is suspect (ms)")
    ] = _DEFAULTS.suspect_after_ms,
    down_after_ms: Annotated[
        int, typer.Option("--down-after-ms", help="silence before its tasks go to others (ms)")
    ] = _DEFAULTS.down_after_ms,
    max_held: Annotated[
        int, typer.Option("--max-held", help="tasks held before the task topics pause")
    ] = _DEFAULTS.max_held,
    aging_ms: Annotated[
        int, typer.Option("--aging-ms", help="wait that raises a task one level (0: strict)")
    ] = _DEFAULTS.aging_ms or 0,
    no_capable_agent_ms: Annotated[
        int,
        typer.Option(
            "--no-capable-agent-ms",
            help="wait for an agent able to run a task before dead-lettering it (0: for ever)",
        ),
    ] = _DEFAULTS.no_capable_agent_ms or 0,
    web: Annotated[
        bool,
        typer.Option(
            "--web/--no-web", help="serve /metrics, /status, /context and a dashboard on http_port"
        ),
    ] = _DEFAULTS.web_enabled,
    events: Annotated[
        bool,
        typer.Option("--events/--no-events", help="write one lifecycle event per task to `events`"),
    ] = _DEFAULTS.events_enabled,
    commit_interval_ms: Annotated[
        int,
        typer.Option(
            "--commit-interval-ms",
            help="how often work is made durable and inputs committed (ms)",
        ),
    ] = _DEFAULTS.commit_interval_ms,
    session_timeout_ms: Annotated[
        int,
        typer.Option(
            "--session-timeout-ms",
            help="silence after which a killed instance's shards go to the others (ms)",
        ),
    ] = _DEFAULTS.session_timeout_ms,
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--instance-id",
            help="static group membership: a restart under this id within the session "
            "timeout gets its shards back without a rebalance (unique per instance)",
        ),
    ] = None,
    prefetch_share: Annotated[
        float,
        typer.Option(
            "--prefetch-share",
            help="tasks sent to an agent beyond its slots, as a share of its capacity (0: none)",
        ),
    ] = _DEFAULTS.prefetch_share,
    strategy: Annotated[
        StrategyName,
        typer.Option(
            "--strategy",
            help="routing strategy; round-robin-push and random-push are the naive baselines",
        ),
    ] = _DEFAULTS.strategy,  # type: ignore[assignment]
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
    """Run the dispatcher: read tasks, results and heartbeats; dispatch to the agents."""
    settings = settings_of(ctx)
    setup_logging(loglevel or settings.log_level, log_format or settings.log_format)
    config = DispatcherConfig(
        lease_ms=lease_ms,
        heartbeat_interval_ms=heartbeat_ms,
        suspect_after_ms=suspect_after_ms,
        down_after_ms=down_after_ms,
        max_held=max_held,
        aging_ms=aging_ms or None,
        no_capable_agent_ms=no_capable_agent_ms or None,
        web_enabled=web,
        events_enabled=events,
        commit_interval_ms=commit_interval_ms,
        session_timeout_ms=session_timeout_ms,
        instance_id=instance_id,
        prefetch_share=prefetch_share,
        strategy=strategy,
    )
    if web:  # a busy port: one line now, not a crash after the start-up
        check_address(settings.http_host, settings.http_port)
    require_broker(settings)  # no broker: one line within the connect timeout
    raise typer.Exit(run_dispatcher(Dispatcher(settings, config)))
