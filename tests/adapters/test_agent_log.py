"""The dispatcher's lines about agents (``agent_log.py``), driven through the core as the
dispatcher drives it, read as an operator reads them (the text format)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from streams.adapters.dispatcher.agent_log import AgentLog
from streams.adapters.logs import setup_logging
from streams.core.agents import HealthConfig, Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import AgentLeft, HeartbeatReceived, TaskArrived
from streams.core.model import Job

HEALTH = HealthConfig(heartbeat_interval_ms=100, suspect_after_ms=300, down_after_ms=1_000)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    setup_logging("info", "text", out)
    yield out
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def _core() -> Distributor:
    log = AgentLog(suspect_after_ms=HEALTH.suspect_after_ms, down_after_ms=HEALTH.down_after_ms)
    return Distributor(DistributorConfig(health=HEALTH), on_transition=log)


def _beat(sent_ms: int, *, status: str = "READY", incarnation: int = 4) -> HeartbeatReceived:
    return HeartbeatReceived(
        Heartbeat("a1", 2, frozenset({"gpu"}), "eu", 1.0, 0.0, status, sent_ms, incarnation)
    )


def _said(out: io.StringIO) -> list[str]:
    """Each line without its time: ``LEVEL logger message``."""
    return [line.split(" ", 2)[2] for line in out.getvalue().splitlines()]


def test_an_agents_life_in_the_dispatchers_log(lines: io.StringIO) -> None:
    core = _core()
    name = "streams.adapters.dispatcher.agent_log"
    core.handle([_beat(0), TaskArrived(Job("t", 0, 0))], 0)
    core.handle([_beat(100, status="DRAINING")], 100)
    core.handle([_beat(200)], 200)
    core.handle([], 600)  # silent past suspect_after_ms
    core.handle([_beat(650)], 650)
    core.handle([], 1_700)  # silent past down_after_ms
    core.handle([_beat(1_800)], 1_800)  # the same run heartbeats again
    core.handle([_beat(1_900, incarnation=5)], 1_900)  # a restart without signing off
    core.handle([_beat(2_000, status="STOPPING", incarnation=5)], 2_000)
    core.handle([AgentLeft("a1")], 2_100)  # its claim released: DOWN already, nothing to say
    assert _said(lines) == [
        f"INFO {name} agent a1 joined: claim epoch 4, capacity 2, skills gpu, zone eu",
        f"INFO {name} agent a1 draining: it finishes its 1 task(s) and takes no more",
        f"INFO {name} agent a1 takes work again",
        f"WARNING {name} agent a1 suspect: silent for more than 300 ms; its 1 task(s) stay with "
        "it unless it stays silent for 1000 ms",
        f"INFO {name} agent a1 came back after its silence (READY)",
        f"WARNING {name} agent a1 down: silent for more than 1000 ms; its 1 task(s) go back to "
        "the queue",
        f"INFO {name} agent a1 came back: claim epoch 4, capacity 2, skills gpu, zone eu",
        f"WARNING {name} agent a1 left (its claim ended); 1 task(s) it held go back to the queue",
        f"INFO {name} agent a1 restarted: claim epoch 4 -> 5, capacity 2, skills gpu, zone eu",
        f"WARNING {name} agent a1 left (signed off); 1 task(s) it held go back to the queue",
    ]


def test_an_agent_joining_before_this_instance_owns_shards_shows_its_own_capacity(
    lines: io.StringIO,
) -> None:
    log = AgentLog(
        suspect_after_ms=HEALTH.suspect_after_ms,
        down_after_ms=HEALTH.down_after_ms,
        capacity_of={"a1": 2}.get,
    )
    core = Distributor(DistributorConfig(health=HEALTH), on_transition=log)
    share_before_shards = Heartbeat("a1", 0, frozenset(), None, 1.0, 0.0, "READY", 0, 4)
    core.handle([HeartbeatReceived(share_before_shards)], 0)
    assert _said(lines) == [
        "INFO streams.adapters.dispatcher.agent_log agent a1 joined: claim epoch 4, capacity 2, "
        "skills -, zone -"
    ]
