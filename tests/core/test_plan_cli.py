"""``taskd plan`` as a user types it: the table and the answer, the JSON, and the mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
TASKD = Path(sys.executable).parent / "taskd"
SLO = "p99_queue<500ms,deadline>99%"


def small_plan(tmp_path: Path) -> Path:
    """The shipped planning scenario cut to 400 tasks."""
    text = (ROOT / "scenarios" / "plan.toml").read_text(encoding="utf-8")
    assert "tasks = 4_000" in text
    path = tmp_path / "plan.toml"
    path.write_text(text.replace("tasks = 4_000", "tasks = 400"), encoding="utf-8")
    return path


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, ["plan", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def taskd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TASKD), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_table_shows_every_fleet_tried_and_the_answer(tmp_path: Path) -> None:
    output = invoke("--scenario", str(small_plan(tmp_path)), "--slo", SLO, "--quiet")
    assert f"plan: 400 tasks, seed 11, least-connections, SLO {SLO}" in output
    for header in ("large", "small", "agents", "cost/h", "p99 q ms", "deadline ok", "SLO"):
        assert header in output
    assert output.count("<- answer") == 1
    answer = next(line for line in output.splitlines() if line.startswith("Plan: "))
    assert "large=" in answer and "per hour" in answer
    assert "one agent fewer in any group misses it" in answer


def test_the_json_is_the_same_bytes_twice_and_out_writes_it(tmp_path: Path) -> None:
    path = str(small_plan(tmp_path))
    first = invoke("--scenario", path, "--slo", SLO, "--json", "--quiet")
    assert first == invoke("--scenario", path, "--slo", SLO, "--json", "--quiet")
    report = json.loads(first)
    assert (report["scenario"], report["seed"], report["tasks"]) == ("plan", 11, 400)
    assert [o["text"] for o in report["slo"]] == ["p99_queue<500ms", "deadline>99%"]
    assert [g["cost_per_hour"] for g in report["groups"]] == [4.0, 0.6]
    answer = report["answer"]
    assert answer["met"]
    assert answer in [{k: v for k, v in t.items() if k != "step"} for t in report["trials"]]
    counts = answer["agents"]
    assert answer["cost_per_hour"] == pytest.approx(4.0 * counts["large"] + 0.6 * counts["small"])
    out = tmp_path / "plan.json"
    invoke("--scenario", path, "--slo", SLO, "--out", str(out), "--quiet")
    assert json.loads(out.read_text(encoding="utf-8")) == report


def test_progress_goes_to_stderr_one_line_per_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["plan", "--scenario", str(small_plan(tmp_path)), "--slo", SLO, "--json"]
    )
    assert result.exit_code == 0
    runs = len(json.loads(result.stdout)["trials"])
    lines = result.stderr.splitlines()
    assert len(lines) == runs
    assert lines[0] == "plan: run 1/40 (scale): large=4 small=10: met"


def test_the_erlang_c_answer_is_printed_beside_the_plan_on_an_m_m_c_scenario() -> None:
    output = invoke(
        "--scenario",
        str(ROOT / "scenarios" / "erlang_c.toml"),
        "--slo",
        "mean_queue<200ms",
        "--tasks",
        "1000",
        "--quiet",
    )
    assert "Erlang C (M/M/c, arrivals 2.8/s, service 1/s per slot): 5 agents" in output


def test_each_mistake_of_the_slo_is_one_error_line_and_exit_status_2(tmp_path: Path) -> None:
    result = taskd(
        "plan", "--scenario", str(small_plan(tmp_path)), "--slo", "p98_queue<1s,deadline>99"
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: --slo: 'p98_queue<1s': unknown metric 'p98_queue' (known: mean_queue, "
        "p50_queue, p99_queue, deadline, completion, utilization)",
        "error: --slo: 'deadline>99': no unit: deadline takes a percentage (%)",
    ]


def test_a_plan_that_finds_no_fleet_prints_what_it_tried_and_exits_1(tmp_path: Path) -> None:
    path = str(small_plan(tmp_path))
    result = taskd("plan", "--scenario", path, "--slo", "p99_queue<1s,utilization>99%", "-q")
    assert result.returncode == 1
    assert "<- answer" not in result.stdout and "missed" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no fleet meets p99_queue<1s,utilization>99%")
    no_deadline = taskd(
        "plan", "-s", str(ROOT / "scenarios" / "erlang_c.toml"), "--slo", "deadline>99%"
    )
    assert no_deadline.returncode == 1
    assert no_deadline.stderr.splitlines() == [
        "error: --slo bounds deadline, but no task of the scenario has a deadline_ms"
    ]
