"""The soak's short version (``python -m taskd_lab.soak`` runs the long one): the pipeline fed
at a steady rate for half a minute loses nothing and fails nothing, and its report has a
progress line and a backlog sample per window and every process's memory after warm-up. How
large the backlog grows depends on the machine's speed: the long run's figures are quoted in
docs/guarantees.md, not asserted here."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings
from taskd_lab.bench.plan import BenchPlan
from taskd_lab.soak import run_soak

RATE = 200.0


def test_a_short_soak_loses_nothing_and_reports_every_process_memory(
    settings: Settings, tmp_path: Path
) -> None:
    plan = BenchPlan(work_dir=tmp_path, base=settings, agents=2, capacity=8)
    lines: list[str] = []
    report = run_soak(plan, minutes=0.5, rate=RATE, progress=lines.append)
    assert report["tasks"] > 0 and report["results_seen"] == report["tasks"]
    assert (report["lost"], report["failed"]) == (0, 0)
    assert len(lines) == len(report["backlog"])
    assert set(report["rss"]) == {"dispatcher", "bench-a0", "bench-a1"}
