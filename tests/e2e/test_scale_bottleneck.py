"""The autoscaling signal and the bottleneck verdict of a live dispatcher on the real broker.

An agent without skills runs tasks of type ``work``; tasks that need the skill ``gpu`` wait for
an agent no one started. ``/status`` and ``taskd status`` must name the skill with its figure,
``/scale`` must ask for a ``gpu`` pool from zero, and ``/metrics``' ``taskd_desired_agents``
must say the same as ``/scale``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from streams.settings import Settings
from streams.wire import Task
from streams.worker import Agent
from tests.adapters.test_dispatcher_support import (
    dispatcher_config,
    running_dispatcher,
    submit,
    until,
    with_state,
)
from tests.adapters.test_metrics_agree import _scrape
from tests.adapters.test_worker_support import config, running
from tests.e2e.test_status_cli import taskd

GPU_TASKS = 3


def work(task: Task) -> bytes:
    return b"done"


def test_a_skill_no_agent_has_is_the_bottleneck_and_asks_for_a_pool_from_zero(
    topics: Settings, tmp_path: Path
) -> None:
    live = with_state(topics, tmp_path / "state").model_copy(update={"http_port": 0})
    agent = Agent(config(capacity=2, handlers={"work": work}), live)

    async def scenario() -> tuple[dict[str, object], dict[str, object], dict[str, float], str]:
        async with (
            running_dispatcher(live, dispatcher_config(web_enabled=True)) as dispatcher,
            running(agent),
            aiohttp.ClientSession() as session,
        ):
            base = dispatcher.http_url
            assert base is not None
            await submit(live, 4)
            await submit(live, GPU_TASKS, required_skills=("gpu",))

            def gpu_waits() -> bool:
                pools = dispatcher.scaler.signals
                return dispatcher.core.stats.demand().get((frozenset({"gpu"}), None)) is not None \
                    and "gpu" in pools and pools["gpu"].backlog == GPU_TASKS  # fmt: skip

            await until(gpu_waits, "the gpu tasks counted by the scaling signal")
            async with session.get(base + "/scale") as response:
                assert response.status == 200
                scale = await response.json()
            _, series = await _scrape(session, base + "/metrics")
            desired = {
                dict(labels)["pool"]: value
                for (name, labels), value in series.items()
                if name == "taskd_desired_agents"
            }
            shown = await asyncio.to_thread(taskd, "status", "--url", base)
            assert shown.returncode == 0, shown.stderr
            return dispatcher.status_view(), scale, desired, shown.stdout

    status, scale, desired, printed = asyncio.run(scenario())

    details = status["details"]
    assert isinstance(details, dict)
    assert details["bottleneck"] == {
        "kind": "agents",
        "verdict": f"agents: {GPU_TASKS} tasks wait for agents with skill gpu, and none is ready",
        "figures": {
            "waiting": GPU_TASKS,
            "free_slots": 0,
            "slots": 0,
            "skills": ["gpu"],
            "zone": None,
        },
    }
    # taskd status prints it as a row of its grid (wrapped at the terminal's width)
    assert (
        f"bottleneck agents: {GPU_TASKS} tasks wait for agents with skill gpu, and none is ready"
        in " ".join(printed.split())
    )

    pools = scale["pools"]
    assert isinstance(pools, dict)
    gpu = pools["gpu"]
    assert gpu["current"] == 0 and gpu["desired"] >= 1
    assert gpu["inputs"]["backlog"] == GPU_TASKS
    assert pools["default"]["current"] == 1
    # /scale and /metrics agree (both are set by the same observation, once a second; the
    # figures only grow within the cool-down, so a later scrape can only be equal)
    assert desired == {pool: float(signal["desired"]) for pool, signal in pools.items()}
    json.dumps(scale, allow_nan=False)
