"""``taskd agents`` as a user types it: a dispatcher and an agent run as processes on the
broker, and the table shows the agent with its state, load, types, skills, zone and heartbeat."""

from __future__ import annotations

import json
import subprocess
import time

from streams.settings import Settings, child_environment
from tests.e2e.taskd_process import TASKD, free_port, running

WAIT_S = 60.0


def _agents(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TASKD), "agents", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


def test_the_table_shows_a_running_agent(topics: Settings) -> None:
    settings = topics.model_copy(update={"http_port": free_port(), "agent_metrics_port": 0})
    env = child_environment(settings)
    agent = ("agent", "--id", "table-a1", "--capacity", "3", "--skills", "gpu,ssd")
    agent += ("--zone", "eu-west", "--handler", "resize=streams.examples:work")
    with running(env, "dispatcher", "--heartbeat-ms", "500"), running(env, *agent):
        deadline = time.monotonic() + WAIT_S
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            listed = _agents(env, "--json")
            rows = [json.loads(line) for line in listed.stdout.splitlines()]
            if any(row["id"] == "table-a1" and row["state"] == "READY" for row in rows):
                break
            time.sleep(0.5)
        (row,) = rows
        assert (row["capacity"], row["in_flight"], row["task_types"]) == (3, 0, ["resize"])
        assert (row["skills"], row["zone"]) == (["gpu", "ssd"], "eu-west")
        assert isinstance(row["heartbeat_age_ms"], int) and row["heartbeat_age_ms"] < 10_000

        table = _agents(env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    header = next(line for line in lines if "agent" in line and "last heartbeat" in line)
    for column in ("state", "capacity", "in flight / slots", "types", "skills", "zone"):
        assert column in header
    (line,) = [line for line in lines if "table-a1" in line]
    for cell in ("READY", "0 / 3", "resize", "gpu, ssd", "eu-west", "s ago"):
        assert cell in line, line
    assert lines[-1] == "1 agent(s), 1 ready"
