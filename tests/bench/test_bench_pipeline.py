"""``taskd bench`` in miniature against the real broker: every section of ours produces sane
figures (counts complete, p50 <= p99, throughput > 0, CPU > 0, at least one task record per
task, probes for the sustained rate), the report is written, and no child process outlives the
run. Never a speed assertion: the figures are the benchmark's, not the test's."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from streams.errors import ConfigError
from streams.settings import Settings, load_settings
from taskd_lab.bench.command import _check_local, _sections
from taskd_lab.bench.group import dispatchers_cpu, median_ratio, median_run, round_ratios
from taskd_lab.bench.plan import BenchPlan
from taskd_lab.bench.procs import leftover_children
from taskd_lab.bench.report import render_markdown, write_report
from taskd_lab.bench.suite import run_suite

pytestmark = pytest.mark.broker


def _plan(settings: Settings, work_dir: Path) -> BenchPlan:
    return BenchPlan(
        tasks=300,
        agents=2,
        capacity=4,
        paced_seconds=1.0,
        sustain_seconds=1.0,
        sustain_probes=2,
        waiting=2_000,
        timeout_s=90.0,
        work_dir=work_dir,
        base=settings,
    )


def _check_latency(point: dict[str, Any], count: int) -> None:
    assert point["count"] == count
    assert 0 < point["p50_ms"] <= point["p99_ms"] <= point["max_ms"]


def _check_pipeline(ours: dict[str, Any], plan: BenchPlan) -> None:
    _check_throughput(ours["throughput"], plan)
    _check_throughput(ours["with_events"], plan)
    assert ours["throughput"]["records_per_task"]["events"] == 0  # off by default
    assert ours["with_events"]["records_per_task"]["events"] > 0
    assert ours["failed"] == 0
    assert len(ours["latency"]) == len(plan.fractions)
    for point in ours["latency"]:
        count = point["seen"]["count"]
        assert count >= 100
        for end in ("dispatch", "done", "seen"):
            _check_latency(point[end], count)
        # the agent may finish a no-op task before the observer sees its assignment
        assert point["dispatch"]["p50_ms"] <= point["seen"]["p50_ms"]
        assert point["done"]["p50_ms"] <= point["seen"]["p50_ms"]
    _check_sustained(ours["sustained"], plan)
    assert ours["rss"]["dispatcher_peak_bytes"] > 0
    assert ours["rss"]["agent_peak_bytes"] > 0


def _check_throughput(run: dict[str, Any], plan: BenchPlan) -> None:
    assert run["tasks"] == plan.tasks
    assert 0 < run["throughput_tps"] < math.inf
    assert 0 < run["seen_tps"] < math.inf
    cpu = run["cpu_ms_per_task"]
    assert {"dispatcher", "broker", "agents", "bench"} <= set(cpu)
    # a few hundred tasks take a fraction of a second: a process may not use one clock tick
    # (psutil counts in 10 ms steps), but the pipeline as a whole does
    assert all(value >= 0 for value in cpu.values())
    assert cpu["dispatcher"] + cpu["broker"] + cpu["agents"] > 0
    agents = run["agents"]
    assert [agent["agent"] for agent in agents] == [f"bench-a{i}" for i in range(plan.agents)]
    assert sum(agent["ran"] for agent in agents) == plan.tasks
    assert math.isclose(sum(agent["cpu_ms_per_task"] for agent in agents), cpu["agents"])
    for agent in agents:  # one that ran nothing may not have used a clock tick
        if agent["ran"]:
            assert agent["cpu_ms_per_task_ran"] >= agent["cpu_ms_per_task"] > 0
        else:
            assert agent["cpu_ms_per_task_ran"] is None
    records = run["records_per_task"]
    assert records["tasks.p*"] >= 1
    assert records["dispatch"] > 0 and records["results"] > 0


def _check_sustained(sustained: dict[str, Any], plan: BenchPlan) -> None:
    probes = sustained["probes"]
    assert len(probes) == plan.sustain_probes
    for probe in probes:
        assert probe["count"] >= round(probe["rate_tps"] * plan.sustain_seconds)
        assert 0 < probe["p50_ms"] <= probe["p99_ms"]
        assert 0 <= probe["backlog"] <= probe["count"]
        assert probe["passed"] == (
            probe["backlog"] <= probe["bound"] and probe["p99_ms"] <= plan.sustain_p99_ms
        )
    passed = [probe["rate_tps"] for probe in probes if probe["passed"]]
    assert sustained["rate_tps"] == max(passed, default=None)


def _check_floor(floor: list[dict[str, Any]], rates: list[float], plan: BenchPlan) -> None:
    assert [entry["system"] for entry in floor] == ["confluent-loop", "faust-passthrough", "kafka"]
    for entry in floor:
        assert 0 < entry["throughput_tps"] < math.inf
        assert entry["throughput_tasks"] == plan.tasks
        assert [point["rate_tps"] for point in entry["latency"]] == rates
        for point in entry["latency"]:
            _check_latency(point, point["count"])


def test_a_tiny_bench_reports_every_section_and_leaves_no_child(
    settings: Settings, tmp_path: Path
) -> None:
    plan = _plan(settings, tmp_path / "work")
    doc = run_suite(plan, ["pipeline", "floor", "memory"], lambda _line: None, command="test")
    assert leftover_children() == []

    sections = doc["sections"]
    assert set(sections) == {"pipeline", "floor", "memory"}
    _check_pipeline(sections["pipeline"], plan)
    rates = [point["rate_tps"] for point in sections["pipeline"]["latency"]]
    _check_floor(sections["floor"], rates, plan)
    memory = sections["memory"]
    assert memory["waiting_tasks"] == plan.waiting
    assert memory["dispatcher_waiting_peak_bytes"] >= memory["dispatcher_idle_bytes"] > 0

    doc["out_dir"] = str(tmp_path / "out")
    docs = tmp_path / "benchmarks.md"
    written = write_report(doc, tmp_path / "out", docs)
    assert docs in written
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["sections"]["memory"]
    assert {path.name for path in written} >= {"throughput.png", "latency.png", "memory.png"}
    text = docs.read_text()
    assert "our pipeline" in text and "faust-passthrough" in text and "MiB" in text
    for title in ("## Sustained rate", "## CPU per task", "## Kafka records per task"):
        assert title in text
    assert render_markdown(json.loads((tmp_path / "out" / "bench.json").read_text())) == text


def test_a_section_that_cannot_run_is_reported_skipped() -> None:
    doc = {
        "command": "taskd bench",
        "started_at": "now",
        "duration_s": 1.0,
        "out_dir": "out/bench",
        "machine": {"cores": 2, "ram_gib": 1.0, "cpu": "cpu", "os": "os"},
        "versions": {"python": "3.11"},
        "plan": {
            "tasks": 1,
            "agents": 1,
            "capacity": 1,
            "paced_seconds": 1.0,
            "sustain_seconds": 1.0,
            "fractions": [0.5],
            "waiting": 1,
        },
        "sections": {
            "peers": {"skipped": "no redis-server"},
            "pipeline": {"skipped": "a child died"},
            "quality": {"skipped": "absent"},
        },
    }
    text = render_markdown(doc)
    assert "Skipped: no redis-server" in text and "Skipped: absent" in text
    assert "Skipped: a child died" in text


def test_sections_and_broker_are_checked() -> None:
    assert _sections("pipeline, floor") == ["pipeline", "floor"]
    with pytest.raises(ConfigError, match="unknown"):
        _sections("pipeline,speed")
    with pytest.raises(ConfigError, match="local"):
        _check_local(load_settings(bootstrap_servers="kafka.example.com:9092"))
    _check_local(load_settings(bootstrap_servers="127.0.0.1:9092"))


def test_the_group_section_runs_one_dispatcher_then_two_and_reports_them_side_by_side(
    settings: Settings, tmp_path: Path
) -> None:
    # long enough for each dispatcher to use clock ticks of CPU (psutil counts in 10 ms steps)
    plan = dataclasses.replace(_plan(settings, tmp_path / "work"), tasks=3_000, group_rounds=2)
    lines: list[str] = []
    doc = run_suite(plan, ["group"], lines.append, command="test")
    assert leftover_children() == []
    group = doc["sections"]["group"]
    started = [line for line in lines if line.startswith("group: round")]
    assert started == [
        "group: round 1/2, 1 instance(s)",
        "group: round 1/2, 2 instance(s)",
        "group: round 2/2, 2 instance(s)",
        "group: round 2/2, 1 instance(s)",
    ]
    assert sorted(group) == ["rounds"]  # the measurements only: the medians are derived
    assert [sorted(runs) for runs in group["rounds"]] == [["1", "2"], ["1", "2"]]
    for runs in group["rounds"]:
        for count in ("1", "2"):
            _check_throughput(runs[count], plan)
        assert "dispatchers" not in runs["1"]["cpu_ms_per_task"]
        two = runs["2"]["cpu_ms_per_task"]
        assert two["dispatchers"] == pytest.approx(two["dispatcher"] + two["dispatcher-2"])
        assert two["dispatcher"] > 0 and two["dispatcher-2"] > 0
    doc["out_dir"] = str(tmp_path / "out")
    text = render_markdown(doc)
    assert "## Two dispatcher instances" in text and "two against one" in text
    (cpu_row,) = [row for row in text.splitlines() if row.startswith("| dispatchers, CPU")]
    assert cpu_row.count("x") == 3  # the median of the rounds' ratios, then each round's


def test_the_group_figures_are_the_median_run_and_the_median_of_each_rounds_ratio() -> None:
    def run(cpu: float, tps: float) -> dict[str, Any]:
        return {"cpu_ms_per_task": {"dispatcher": cpu}, "throughput_tps": tps}

    rounds = [
        {"1": run(0.10, 1000), "2": run(0.12, 900)},
        {"1": run(0.20, 500), "2": run(0.22, 450)},  # a slow moment: both sides slow
        {"1": run(0.11, 950), "2": run(0.11, 1000)},
    ]
    group = {"rounds": rounds}
    assert median_run(group, "1") is rounds[2]["1"] and median_run(group, "2") is rounds[0]["2"]
    ratios = round_ratios(group, dispatchers_cpu)
    assert ratios == pytest.approx([1.2, 1.1, 1.0])
    assert median_ratio(group, dispatchers_cpu) == pytest.approx(1.1)
    assert median_ratio(group, lambda r: r["throughput_tps"]) == pytest.approx(0.9)
    before_rounds = {"1": run(0.1, 1), "2": run(0.2, 0)}  # a section written before rounds
    assert median_run(before_rounds, "2") is before_rounds["2"]
    assert median_ratio(before_rounds, dispatchers_cpu) == pytest.approx(2.0)
    assert median_ratio(before_rounds, lambda r: r["throughput_tps"]) is None
