"""``taskd agent``: run a worker agent until SIGTERM or SIGINT, then drain and exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import typer

from streams.adapters import heap
from streams.adapters.kafka import LIBRDKAFKA_LOG, require_broker
from streams.adapters.logs import setup_logging
from streams.adapters.worker import Agent, AgentConfig, Ready, default_agent_id
from streams.adapters.worker.handlers import load_object, parse_handler_options
from streams.app import App
from streams.cli.context import settings_of
from streams.errors import ConfigError
from streams.wire import Task


def agent(
    ctx: typer.Context,
    capacity: Annotated[int, typer.Option("--capacity", help="slots: tasks run at once (>= 1)")],
    agent_id: Annotated[
        str | None, typer.Option("--id", help="agent id (default: host name and pid)")
    ] = None,
    skills: Annotated[str, typer.Option("--skills", help="comma-separated skills")] = "",
    zone: Annotated[str | None, typer.Option("--zone", help="the agent's zone")] = None,
    weight: Annotated[float, typer.Option("--weight", help="routing weight (> 0)")] = 1.0,
    cost: Annotated[
        float,
        typer.Option("--cost", help="cost per task (>= 0): packing opens cheaper agents first"),
    ] = 0.0,
    handler: Annotated[
        list[str] | None,
        typer.Option(
            "--handler",
            help="module:function for every type, or TYPE=module:function (repeatable)",
        ),
    ] = None,
    app: Annotated[
        str | None,
        typer.Option("--app", help="module:app, a taskd.App: run every task it declares"),
    ] = None,
    heartbeat_ms: Annotated[
        int, typer.Option("--heartbeat-ms", help="heartbeat interval in ms")
    ] = 1_000,
    prefetch: Annotated[
        int | None,
        typer.Option(
            "--prefetch",
            help="assignments read ahead beyond the slots (default: the capacity); the "
            "dispatcher sends no more than that beyond them",
        ),
    ] = None,
    connect_timeout_ms: Annotated[
        int | None,
        typer.Option(
            "--connect-timeout-ms",
            help="give up when no broker answers by then (else TASKD_CONNECT_TIMEOUT_MS, 10000)",
        ),
    ] = None,
    log_format: Annotated[
        Literal["text", "json"] | None,
        typer.Option(
            "--log-format", help="text, or json: one object per line (else TASKD_LOG_FORMAT, text)"
        ),
    ] = None,
) -> None:
    """Run a worker agent: claim a dispatch partition, run its tasks, drain on SIGTERM."""
    settings = settings_of(ctx)
    setup_logging(settings.log_level, log_format or settings.log_format)
    config = _config(
        agent_id=agent_id,
        capacity=capacity,
        skills=skills,
        zone=zone,
        weight=weight,
        cost=cost,
        handlers=handler or [],
        app_handlers=None if app is None else load_app(app).handlers(),
        heartbeat_ms=heartbeat_ms,
        prefetch=prefetch,
        connect_timeout_ms=connect_timeout_ms or settings.connect_timeout_ms,
    )
    require_broker(settings, config.connect_timeout_ms / 1000)  # else one line, in time
    LIBRDKAFKA_LOG.setLevel(logging.CRITICAL)  # our own errors say what failed, once
    asyncio.run(_run(Agent(config, settings, on_ready=_print_ready)))


def _config(
    *,
    agent_id: str | None,
    capacity: int,
    skills: str,
    zone: str | None,
    weight: float,
    cost: float,
    handlers: list[str],
    app_handlers: Mapping[str, Callable[[Task], Any]] | None,
    heartbeat_ms: int,
    prefetch: int | None,
    connect_timeout_ms: int,
) -> AgentConfig:
    if not handlers and app_handlers is None:
        raise ConfigError(
            "--handler or --app is required, e.g. --handler streams.examples:work"
            " or --app tasks:app"
        )
    default, by_type = parse_handler_options(handlers)
    return AgentConfig(
        agent_id=agent_id or default_agent_id(),
        capacity=capacity,
        handler=default,
        handlers={**(app_handlers or {}), **by_type},
        skills=tuple(skill.strip() for skill in skills.split(",") if skill.strip()),
        zone=zone,
        weight=weight,
        cost_per_task=cost,
        heartbeat_interval_ms=heartbeat_ms,
        prefetch=prefetch,
        connect_timeout_ms=connect_timeout_ms,
    )


async def _run(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stop)
    try:
        await agent.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    print(f"agent {agent.config.agent_id} stopped", flush=True)


def load_app(ref: str) -> App:
    """The ``taskd.App`` that ``module:name`` names; ConfigError saying what is wrong."""
    found = load_object(ref, "--app", "app", example="tasks:app")
    if not isinstance(found, App):
        raise ConfigError(f"--app {ref!r} is a {type(found).__name__}, not a taskd.App")
    if not found.tasks:
        raise ConfigError(f"--app {ref!r}: the app declares no task (@app.task)")
    return found


def _print_ready(ready: Ready) -> None:
    heap.settle()  # this process is the agent: what start-up made lives as long
    skills = ",".join(ready.skills) or "-"
    print(
        f"agent {ready.agent_id} ready: partition {ready.partition} epoch {ready.epoch} "
        f"capacity {ready.capacity} skills {skills} "
        f"metrics on {ready.metrics_host}:{ready.metrics_port}",
        flush=True,
    )
