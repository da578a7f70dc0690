"""``taskd demo`` as a user runs it, on a small workload through the real broker: the figures,
the report, the same plan simulated and its gap to the live run, and nothing left running
afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TASKD = "import sys\nfrom streams.cli.main import main\nsys.argv[0] = 'taskd'\nmain()\n"
RUN_KEYS = {
    "tasks",
    "completed",
    "dead_lettered",
    "dead_by_reason",
    "unsettled",
    "completion",
    "queue_ms",
    "queue_ms_by_priority",
    "utilization",
    "agent_utilization",
    "load_cv",
    "deadline_success",
    "inversions",
    "load_over_time",
    "wall_ms",
}


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "TASKD_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TASKD_TOPIC_PREFIX": settings.topic_prefix,
        "TASKD_SHARDS": "2",
        "TASKD_DISPATCH_PARTITIONS": "16",
    }


def _ours(settings: Settings) -> list[psutil.Process]:
    """Processes still running with this test's topic prefix (the demo's children)."""
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            prefix = process.environ().get("TASKD_TOPIC_PREFIX", "")
        except (psutil.Error, OSError):
            continue
        if prefix.startswith(settings.topic_prefix) and process.pid != os.getpid():
            found.append(process)
    return found


@pytest.mark.broker
def test_a_small_demo_writes_its_figures_and_report_and_leaves_nothing_running(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-c", TASKD, "demo", "--tasks", "600", "--out", str(out)],
        env=_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = " ".join(done.stdout.split())
    assert "Distributed 600 tasks: average queue time" in printed
    assert "Live against simulated: affinity" in printed
    assert "goal: live mean queue time <= simulated + 25 ms (" in printed
    assert "goal: inversions <= 0.1% of tasks (" in printed

    report = json.loads((out / "demo.json").read_text())
    # the summary sentence on one line of its own (not wrapped at the pipe's 80 columns), as
    # demo.json holds it, with the figures it states
    summary = report["summary"]
    assert summary["sentence"] in done.stdout.splitlines()
    assert summary["sentence"].startswith("Distributed 600 tasks: average queue time ")
    assert "against round-robin." in summary["sentence"]
    assert summary["figures"]["tasks"] == 600
    assert summary["figures"]["mean_queue_ms"] == report["runs"]["affinity"]["queue_ms"]["mean"]
    assert summary["figures"]["wait_cut"] == report["wait_cut"]
    assert set(report) >= {"summary", "workload", "runs", "wait_cut", "simulated", "gap", "wall_s"}
    assert set(report["runs"]) == {"affinity", "round-robin-push"}
    for run in report["runs"].values():
        assert set(run) >= RUN_KEYS
        assert run["tasks"] == 600
        assert run["completed"] + run["dead_lettered"] + run["unsettled"] == 600
        assert sum(run["dead_by_reason"].values()) == run["dead_lettered"]
    settled = report["runs"]["affinity"]
    assert settled["unsettled"] == 0
    assert settled["completed"] + settled["dead_lettered"] == 600
    _check_simulated(report)
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _ours(settings) == []


def _check_simulated(report: dict[str, Any]) -> None:
    """The simulated run of the default strategy is there, adds up, and the gap is live minus
    simulated figure by figure (no figure's value is asserted: they depend on the machine)."""
    simulated, live = report["simulated"]["figures"], report["runs"]["affinity"]
    assert set(simulated) >= RUN_KEYS
    assert simulated["tasks"] == 600
    assert simulated["completed"] + simulated["dead_lettered"] + simulated["unsettled"] == 600
    assert report["simulated"]["model"]["strategy"] == "affinity"
    rows = report["gap"]["figures"]
    assert rows["completed"] == {
        "live": live["completed"],
        "simulated": simulated["completed"],
        "gap": live["completed"] - simulated["completed"],
    }
    assert rows["mean_queue_ms"]["live"] == live["queue_ms"]["mean"]
    assert rows["mean_queue_ms"]["simulated"] == simulated["queue_ms"]["mean"]
    for goal in report["gap"]["goals"].values():
        assert goal["holds"] in (True, False)
