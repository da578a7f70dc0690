"""The soak's short version (``python -m taskd_lab.soak`` runs the long one): the pipeline fed
at a steady rate for half a minute loses nothing, fails nothing and keeps its backlog under a
window's worth of tasks; its report holds every process's memory after warm-up."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings
from taskd_lab.bench.plan import BenchPlan
from taskd_lab.soak import WINDOW_S, run_soak

RATE = 200.0


def test_a_short_soak_loses_nothing_and_keeps_its_backlog_bounded(
    settings: Settings, tmp_path: Path
) -> None:
    plan = BenchPlan(work_dir=tmp_path, base=settings, agents=2, capacity=8)
    lines: list[str] = []
    report = run_soak(plan, minutes=0.5, rate=RATE, progress=lines.append)
    assert report["tasks"] == 3 * RATE * WINDOW_S and len(lines) == 3
    assert (report["lost"], report["failed"]) == (0, 0)
    assert report["max_backlog"] < RATE * WINDOW_S
    assert set(report["rss"]) == {"dispatcher", "bench-a0", "bench-a1"}
    assert all(entry["median_mib"] > 10 for entry in report["rss"].values())
