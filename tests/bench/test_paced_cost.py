"""``python -m taskd_lab.bench.paced_cost`` in miniature against the real broker: each rate's
tasks all come back, every process is measured, and the table shows each of them. Never a
speed assertion: the figures are the measurement's, not the test's."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings
from taskd_lab.bench.cost import BENCH, BROKER
from taskd_lab.bench.paced_cost import AGENTS, run_paced_cost, table
from taskd_lab.bench.plan import BenchPlan
from taskd_lab.bench.procs import leftover_children

pytestmark = pytest.mark.broker


def test_each_rate_measures_every_process_over_all_its_tasks(
    settings: Settings, tmp_path: Path
) -> None:
    plan = BenchPlan(agents=2, capacity=4, timeout_s=90.0, work_dir=tmp_path, base=settings)
    lines: list[str] = []
    rows = run_paced_cost(plan, [100.0, 200.0], 1.0, lines.append)
    assert [(row["rate_tps"], row["tasks"]) for row in rows] == [(100.0, 100), (200.0, 200)]
    for row in rows:
        assert set(row["cpu_ms_per_task"]) == {"dispatcher", BROKER, BENCH, AGENTS}
        assert all(ms > 0 for ms in row["cpu_ms_per_task"].values())
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    shown = table(rows)
    assert "| 100 |" in shown and "| 200 |" in shown and AGENTS in shown
    assert leftover_children() == []
