"""``python -m taskd_lab.repeat``: the median and range of each figure over runs (properties,
no broker), the figures read from a run's JSON, and a real repeat of a tiny demo."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import ConfigError
from streams.settings import Settings
from taskd_lab.repeat.quoted import bench_figures, demo_figures
from taskd_lab.repeat.run import command_kind
from taskd_lab.repeat.spread import describe, spread, spreads

ROOT = Path(__file__).resolve().parents[2]
values = st.lists(
    st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)),
    max_size=9,
)


@given(values)
def test_the_median_lies_between_the_lowest_and_the_highest_run(runs: list[float | None]) -> None:
    figure = spread(runs)
    present = [value for value in runs if value is not None]
    assert figure.values == tuple(runs)
    assert figure.measured == len(present)
    if not present:
        assert (figure.median, figure.low, figure.high) == (None, None, None)
        assert describe(figure) == "n/a"
        return
    assert figure.low == min(present) and figure.high == max(present)
    assert figure.low <= figure.median <= figure.high  # type: ignore[operator]


@given(values, st.randoms(use_true_random=False))
def test_the_order_of_the_runs_does_not_change_the_median(
    runs: list[float | None], random: object
) -> None:
    shuffled = list(runs)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert spread(shuffled).median == spread(runs).median


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=9).map(tuple))
def test_an_odd_number_of_runs_has_one_of_them_as_its_median(runs: tuple[float, ...]) -> None:
    odd = runs if len(runs) % 2 else runs[1:] or runs
    assert spread(list(odd)).median in odd


@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(1, 7))
def test_a_figure_every_run_agrees_on_is_that_figure(value: float, runs: int) -> None:
    figure = spread([value] * runs)
    assert figure.median == figure.low == figure.high == value


def test_figures_missing_from_a_run_count_as_none_in_that_run() -> None:
    figures = spreads([{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"a": 2.0, "b": 4.0}])
    assert list(figures) == ["a", "b"]
    assert figures["a"].median == 2.0
    assert figures["b"].values == (2.0, None, 4.0)
    assert (figures["b"].median, figures["b"].measured) == (3.0, 2)


def test_a_figure_is_described_as_the_readme_quotes_it() -> None:
    assert describe(spread([41, 33, 37]), " ms") == "37 ms (33-41 over 3 runs)"
    assert describe(spread([0.022, 0.021, 0.025]), "%", 1, 100) == "2.2% (2.1-2.5 over 3 runs)"
    assert describe(spread([5, 5]), " ms") == "5 ms (the same in each, over 2 runs)"
    assert describe(spread([None, 105, None]), "/s") == "105/s (one run of 3)"
    assert describe(spread([2, None, 4]), "/s") == "3/s (2-4 over 2 runs of 3)"


def test_the_repeated_command_is_demo_or_bench_and_repeat_places_its_output() -> None:
    assert command_kind(["demo", "--tasks", "10"]) == "demo"
    assert command_kind(["-b", "127.0.0.1:9092", "bench", "--sections", "peers"]) == "bench"
    with pytest.raises(ConfigError, match="one of"):
        command_kind(["simulate"])
    with pytest.raises(ConfigError, match="--out"):
        command_kind(["demo", "--out", "x"])


def test_the_bench_figures_leave_out_skipped_sections_and_compare_us_to_each_peer() -> None:
    doc = {
        "sections": {
            "peers": [{"system": "celery", "throughput_tps": 1000.0, "latency": []}],
            "memory": {"skipped": "no room"},
        }
    }
    assert bench_figures(doc) == {
        "peers.celery.throughput_tps": 1000.0,
        "peers.celery.ours_x": None,
    }


def test_the_bench_figures_give_the_median_of_the_group_rounds() -> None:
    def run(cpu: float, tps: float) -> dict[str, object]:
        return {"cpu_ms_per_task": {"dispatcher": cpu}, "throughput_tps": tps}

    rounds = [
        {"1": run(0.1, 1000.0), "2": run(0.13, 900.0)},
        {"1": run(0.1, 1000.0), "2": run(0.11, 1100.0)},
        {"1": run(0.1, 1000.0), "2": run(0.12, 1000.0)},
    ]
    doc = {"sections": {"group": {"rounds": rounds}}}
    figures = bench_figures(doc)
    assert figures["group.dispatchers_cpu_x"] == pytest.approx(1.2)
    assert figures["group.throughput_x"] == pytest.approx(1.0)


def test_a_dead_letter_reason_a_demo_run_did_not_see_counts_as_zero_not_as_missing() -> None:
    run = {
        "completed": 95,
        "completion": 0.95,
        "dead_lettered": 5,
        "dead_by_reason": {"FAILED": 5},
        "unsettled": 0,
        "queue_ms": {"mean": 37.7, "p99": 290},
        "queue_ms_by_priority": {"p0": {"mean": 19.0}},
        "deadline_success": 1.0,
        "utilization": 0.9,
        "load_cv": 0.02,
        "inversions": 3,
        "wall_ms": 1500,
    }
    summary = {"sentence": "...", "figures": {"strategy": "affinity", "mean_queue_ms": 37.7}}
    figures = demo_figures({"summary": summary, "runs": {"affinity": run}, "wall_s": 2.0})
    assert figures["affinity.dead_FAILED"] == 5
    assert figures["affinity.dead_MAX_ATTEMPTS"] == 0
    assert figures["summary.mean_queue_ms"] == figures["affinity.mean_queue_ms"] == 37.7
    assert figures["affinity.mean_queue_ms_p0"] == 19.0
    assert figures["affinity.wall_s"] == 1.5


@pytest.mark.broker
def test_a_repeated_tiny_demo_reports_each_run_and_medians_consistent_with_them(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "repeat"
    env = {
        **os.environ,
        "TASKD_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TASKD_TOPIC_PREFIX": settings.topic_prefix,
        "TASKD_SHARDS": "2",
        "TASKD_DISPATCH_PARTITIONS": "16",
    }
    command = ["--runs", "2", "--out", str(out), "--", "demo", "--tasks", "150", "--no-baseline"]
    done = subprocess.run(
        [sys.executable, "-m", "taskd_lab.repeat", *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "repeat.json").read_text())
    assert report["command"].endswith("-- demo --tasks 150 --no-baseline")
    assert report["each_run"] == "taskd demo --tasks 150 --no-baseline --out <out>/run-<n>"
    assert report["machine"]["cores"] == os.cpu_count()
    assert len(report["git_commit"].split("+")[0]) == 40
    assert report["env"]["TASKD_TOPIC_PREFIX"] == settings.topic_prefix
    assert len(report["runs"]) == 2
    for number, run in enumerate(report["runs"], start=1):
        assert len(run["load_before"]) == len(run["load_after"]) == 3
        demo = json.loads((out / f"run-{number}" / "demo.json").read_text())
        assert (
            run["figures"]["summary.mean_queue_ms"] == demo["summary"]["figures"]["mean_queue_ms"]
        )
        assert run["figures"]["summary.tasks"] == 150
        # the summary printed on one line, as demo.json holds it
        assert demo["summary"]["sentence"] in Path(run["log"]).read_text().splitlines()
    for name, figure in report["figures"].items():
        runs = [run["figures"].get(name) for run in report["runs"]]
        assert figure["values"] == runs
        present = [value for value in runs if value is not None]
        expected = statistics.median(present) if present else None
        assert figure["median"] == expected, name
        assert figure["low"] == (min(present) if present else None)
        assert figure["high"] == (max(present) if present else None)
    assert "median" in done.stdout and "summary.mean_queue_ms" in done.stdout
