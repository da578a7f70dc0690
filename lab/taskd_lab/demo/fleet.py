"""The demo's fleet: the dispatcher and the agents as real ``taskd`` child processes.

They are :mod:`taskd_lab.procs` children: each in a process group of its own, so a Ctrl-C in
the terminal reaches only the demo, which then stops them itself (SIGTERM, then SIGKILL):
nothing it started outlives it. Their output goes to one log file each, which is also how
readiness is seen ("agent X ready", "dispatcher ready"). What is the demo's own: the agents
start a few at a time, each with its own ports and its handler's speed and failure rate, and
the one the demo kills half way is no error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from streams.settings import Settings, child_environment
from taskd_lab.procs import Child, Children, free_port, taskd_command

READY_S = 120.0
"""How long the dispatcher and the agents may take to be ready (a busy 2-core machine)."""
STOP_S = 20.0
"""How long a SIGTERM'd process may take to drain before it is killed."""
WAVE = 3
"""Agents started at once: agents starting together race for the lowest free dispatch
partition and give up after 5 lost races, so a few at a time always get one."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent of the fleet: its slots, speed, skills, zone, and how flaky it is."""

    agent_id: str
    capacity: int
    speed: float = 1.0
    """Work units per second per slot (the demo handler divides its work time by it)."""
    skills: tuple[str, ...] = ()
    zone: str | None = None
    fail_rate: float = 0.0
    """Probability that an attempt ends RETRYABLE."""

    @property
    def work_rate(self) -> float:
        """Work units per second the agent runs when every slot is busy."""
        return self.capacity * self.speed


@dataclass(frozen=True, slots=True)
class Timings:
    """The dispatcher's timings for the demo: failover a few seconds after a crash."""

    heartbeat_ms: int = 500
    suspect_after_ms: int = 1_500
    down_after_ms: int = 3_000
    lease_ms: int = 600_000
    """Long on purpose: under the push baseline a task may wait minutes in an agent's own
    partition, and a short lease would fail it over while it waits (as the reference does)."""


class Fleet:
    """``taskd dispatcher --strategy S`` and one ``taskd agent`` per spec; a context manager
    whose exit stops every process it started."""

    def __init__(
        self,
        settings: Settings,
        *,
        strategy: str,
        agents: Sequence[AgentSpec],
        log_dir: Path,
        timings: Timings | None = None,
    ) -> None:
        self._settings = settings
        self._strategy = strategy
        self._agents = tuple(agents)
        self._timings = timings or Timings()
        env = {**child_environment(settings), "PYTHONUNBUFFERED": "1"}
        self._children = Children(log_dir, env, stop_wait_s=STOP_S)

    def __enter__(self) -> Self:
        self._children.__enter__()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = READY_S) -> None:
        """Start the dispatcher and the agents (WAVE at a time); return when all are ready."""
        started = time.monotonic()
        dispatcher = self._spawn("dispatcher", self._dispatcher_args(), {})
        for first in range(0, len(self._agents), WAVE):
            wave: dict[Child, str] = {}
            for spec in self._agents[first : first + WAVE]:
                agent = self._spawn(
                    spec.agent_id, _agent_args(spec, self._timings), _agent_env(spec)
                )
                wave[agent] = f"agent {spec.agent_id} ready"
            self._children.wait_for_logs(wave, timeout_s, since=started)
        self._children.wait_for_logs({dispatcher: "dispatcher ready"}, timeout_s, since=started)

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (a crash: no drain, no goodbye)."""
        self._children[name].kill()

    def check(self) -> None:
        """Raise a TaskdError when a process the demo did not kill has exited."""
        self._children.check_alive()

    def stop(self) -> None:
        """Stop every process still running (SIGTERM, SIGKILL past STOP_S; a second Ctrl-C
        meanwhile is ignored, so that nothing is left behind)."""
        self._children.stop_all()

    def _dispatcher_args(self) -> list[str]:
        timings = self._timings
        return [
            "dispatcher",
            "--strategy",
            self._strategy,
            "--heartbeat-ms",
            str(timings.heartbeat_ms),
            "--suspect-after-ms",
            str(timings.suspect_after_ms),
            "--down-after-ms",
            str(timings.down_after_ms),
            "--lease-ms",
            str(timings.lease_ms),
            "--loglevel",
            "info",
        ]

    def _spawn(self, name: str, args: list[str], extra_env: Mapping[str, str]) -> Child:
        """``taskd <args>`` with ports of its own (several agents and dispatchers, the demo's
        and any other, share this host) and ``extra_env``."""
        own = self._settings.model_copy(update={"http_port": free_port(), "agent_metrics_port": 0})
        return self._children.start(
            name, [*taskd_command(), *args], {**own.environment(), **extra_env}
        )


def _agent_args(spec: AgentSpec, timings: Timings) -> list[str]:
    args = ["agent", "--id", spec.agent_id, "--capacity", str(spec.capacity)]
    args += ["--handler", "streams.examples:work", "--heartbeat-ms", str(timings.heartbeat_ms)]
    args += ["--weight", f"{spec.work_rate:g}"]
    if spec.skills:
        args += ["--skills", ",".join(spec.skills)]
    if spec.zone:
        args += ["--zone", spec.zone]
    return args


def _agent_env(spec: AgentSpec) -> dict[str, str]:
    return {"TASKD_DEMO_SPEED": f"{spec.speed:g}", "TASKD_DEMO_FAIL_RATE": f"{spec.fail_rate:g}"}
