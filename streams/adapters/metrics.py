"""An agent's Prometheus metrics (prefix ``taskd_agent_``, durations in seconds).

Built from an injected :class:`~prometheus_client.CollectorRegistry`, so several agents in one
process (tests) keep apart, and served on their own port by :func:`serve_metrics`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streams.errors import ConfigError

RUN_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0)
"""Handler run times from a millisecond to half an hour."""


class AgentMetrics:
    """Every metric of one agent, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, capacity: int) -> None:
        self.registry = registry
        self.started = Counter(
            "taskd_agent_tasks_started", "Tasks handed to a handler.", registry=registry
        )
        self.completed = Counter(
            "taskd_agent_tasks_completed",
            "Results written, by status (REJECTED ones were never started).",
            ["status"],
            registry=registry,
        )
        self.skipped = Counter(
            "taskd_agent_assignments_skipped",
            "Assignments dropped unrun: stale epoch, repeated attempt or undecodable bytes.",
            ["reason"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "taskd_agent_task_run_seconds",
            "How long handlers ran, in seconds (batch handlers: each task's whole batch).",
            buckets=RUN_SECONDS_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "taskd_agent_in_flight", "Tasks running now (at most the capacity).", registry=registry
        )
        self.prefetched = Gauge(
            "taskd_agent_prefetched",
            "Assignments fetched and waiting for a free slot.",
            registry=registry,
        )
        self.capacity = Gauge(
            "taskd_agent_capacity", "Slots: tasks the agent runs at once.", registry=registry
        )
        self.capacity.set(capacity)


@dataclass(slots=True)
class MetricsServer:
    """A running ``/metrics`` endpoint; ``close`` stops it and frees its port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when 0 was asked for)."""
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_metrics(registry: CollectorRegistry, *, port: int, host: str) -> MetricsServer:
    """Serve ``registry`` on ``host:port`` (0: any free port); ConfigError if it can't bind."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise ConfigError(
            f"cannot serve agent metrics on {host}:{port}: {error.strerror or error} "
            "(set TASKD_AGENT_METRICS_PORT, 0 for any free port)"
        ) from error
    return MetricsServer(server, thread)
