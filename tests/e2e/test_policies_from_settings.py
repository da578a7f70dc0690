"""Policies from the settings file, through ``taskd dispatcher`` and ``taskd agent`` run as an
operator runs them: a tenant's in-flight quota and a routing rule that sends a type to the
agents of a skill hold on the real broker, and ``/context`` shows them."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from streams.client import TaskClient
from streams.settings import Settings, child_environment
from streams.wire import TaskResult, TaskStatus
from tests.adapters.test_worker_support import WAIT_S, read_results
from tests.e2e.taskd_process import free_port, running

WORK = b'{"work_ms": 150}'
POLICIES = """
[dispatcher]
heartbeat_interval_ms = 300
suspect_after_ms = 1500
down_after_ms = 3000

[dispatcher.tenants.acme]
max_in_flight = 1

[[dispatcher.routing_rules]]
match_type = "render"
pool = ["skill=gpu"]
fallback = ["WAIT"]
"""


def _context(port: int) -> dict[str, object]:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/context", timeout=5) as answer:
                found: dict[str, object] = json.load(answer)
                return found
        except OSError:
            assert time.monotonic() < deadline, f"no /context on port {port} within {WAIT_S} s"
            time.sleep(0.3)


def _most_at_once(results: list[TaskResult]) -> int:
    """The most of ``results`` running at the same moment (from their start and end times)."""
    edges = sorted(
        [(r.started_at, 1) for r in results] + [(r.finished_at, -1) for r in results]
    )  # an end sorts before a start at the same millisecond: back to back is not at once
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_a_quota_and_a_routing_rule_from_the_settings_file_hold(
    topics: Settings, tmp_path: Path
) -> None:
    port = free_port()
    settings = topics.model_copy(update={"http_port": port, "agent_metrics_port": 0})
    config = tmp_path / "taskd.toml"
    config.write_text(POLICIES)
    env = child_environment(settings)
    del env["TASKD_DISPATCHER"]  # the table comes from the file, as an operator writes it
    env["TASKD_CONFIG"] = str(config)
    handler = ("--handler", "streams.examples:work", "--heartbeat-ms", "300")
    with ExitStack() as stack:
        stack.enter_context(running(env, "dispatcher"))
        context = _context(port)
        for agent, skills in (("gpu-1", "gpu"), ("cpu-1", "cpu")):
            agent_args = ("agent", "--id", agent, "--capacity", "4", "--skills", skills)
            stack.enter_context(running(env, *agent_args, *handler))
        sent: dict[str, str] = {}  # task id -> render, acme or globex
        with TaskClient(settings) as client:
            for _ in range(6):
                task = client.submit_new(type="render", priority=1, payload=WORK).task
                sent[task.task_id] = "render"
                for tenant in ("acme", "globex"):
                    handle = client.submit_new(
                        type="resize", priority=1, payload=WORK, tenant=tenant
                    )
                    sent[handle.task.task_id] = tenant
        results = [result for _, result in read_results(settings, 18)]

    assert all(result.status is TaskStatus.SUCCEEDED for result in results)
    assert {r.task_id for r in results} == set(sent)

    def of(kind: str) -> list[TaskResult]:
        return [r for r in results if sent[r.task_id] == kind]

    assert {r.agent_id for r in of("render")} == {"gpu-1"}  # cpu-1 had free slots all along
    assert _most_at_once(of("acme")) == 1
    assert _most_at_once(of("globex")) > 1

    constraints = context["constraints"]
    strategy = context["strategy"]
    assert isinstance(constraints, dict) and isinstance(strategy, dict)
    assert constraints["tenant_max_in_flight"] == {"acme": 1}
    table = context["dispatcher"]  # the [dispatcher] table in effect, as the file set it
    assert isinstance(table, dict)
    assert table["tenants"] == {
        "acme": {"weight": 1.0, "max_in_flight": 1, "max_rate_per_s": None, "burst": None}
    }
    assert (table["heartbeat_interval_ms"], table["down_after_ms"]) == (300, 3_000)
    assert constraints["heartbeat_interval_ms"] == 300
    assert strategy["rules"] == [
        {
            "match_type": "render",
            "match_tenant": None,
            "match_header": None,
            "pool": ["skill=gpu"],
            "strategy": None,
            "fallback": ["WAIT"],
        }
    ]
