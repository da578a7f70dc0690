"""The peers benchmark for real: Celery and Dramatiq on a Redis that the bench fetches itself.

Small and unhurried (200 tasks, 2 workers): it checks that every task is accounted for and
that nothing is left running, never how fast anything is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.errors import ConfigError, TaskdError
from taskd_lab.bench import peers
from taskd_lab.bench.peers import BenchUnavailable, percentile, run_peers

TASKS = 200


def processes_under(directory: Path) -> list[int]:
    """Pids whose working directory lies in ``directory``: the bench starts every child there."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue  # gone, a zombie, or not ours to see
        if cwd == directory or directory in cwd.parents:
            found.append(int(entry.name))
    return found


def test_each_peer_runs_every_task_and_leaves_nothing_behind(tmp_path: Path) -> None:
    results = run_peers(tasks=TASKS, concurrency=2, rates=None, work_dir=tmp_path)

    assert [result["system"] for result in results] == ["celery", "dramatiq"]
    for result in results:
        assert result["tasks"] == TASKS
        assert result["concurrency"] == 2
        assert str(result["broker"]).startswith("redis ")
        throughput = result["throughput_tps"]
        assert isinstance(throughput, float) and throughput > 0
        rows = result["latency"]
        assert isinstance(rows, list) and len(rows) == len(peers.DEFAULT_RATE_FRACTIONS)
        for row in rows:
            paced = round(row["rate_tps"] * peers.LATENCY_WINDOW_S)
            wanted = min(TASKS, max(peers.MIN_LATENCY_TASKS, paced))
            assert row["completed"] == wanted
            assert 0 <= row["e2e_p50_ms"] <= row["e2e_p99_ms"]
    assert processes_under(tmp_path) == []


def test_bad_arguments_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_peers(tasks=0, concurrency=2, rates=None, work_dir=tmp_path)
    with pytest.raises(ConfigError):
        run_peers(tasks=10, concurrency=2, rates=[0.0], work_dir=tmp_path)


def test_a_missing_redis_script_is_a_clear_taskd_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "REDIS_SCRIPT", tmp_path / "nowhere.py")
    with pytest.raises(BenchUnavailable, match="missing") as caught:
        run_peers(tasks=10, concurrency=1, rates=None, work_dir=tmp_path)
    assert isinstance(caught.value, TaskdError)


def test_percentile_is_nearest_rank() -> None:
    ordered = [float(value) for value in range(1, 101)]
    assert percentile(ordered, 50) == 50.0
    assert percentile(ordered, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
