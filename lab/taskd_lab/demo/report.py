"""The demo's outputs: the summary sentence, a table of both runs, the JSON and the PNG report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

BASELINE = "round-robin-push"
JSON_NAME = "demo.json"
PNG_NAME = "demo.png"

Figures = Mapping[str, Any]


def wait_cut(strategy: Figures, baseline: Figures) -> float | None:
    """How much lower the strategy's mean wait of every task is than the baseline's (0.4: 40%
    lower); unstarted tasks count up to their dead letter or the run's end, so a run that
    leaves work waiting cannot look better for it."""
    ours, theirs = strategy.get("mean_wait_all_ms"), baseline.get("mean_wait_all_ms")
    if ours is None or not theirs:
        return None
    return 1 - float(ours) / float(theirs)


def summary(strategy: str, runs: Mapping[str, Figures]) -> dict[str, Any]:
    """The delivery summary in the reference's terms, measured: ``{"sentence", "figures"}``,
    the figures being exactly those the sentence states (unrounded), so ``demo.json`` and
    ``taskd_lab.repeat`` read them instead of parsing the sentence."""
    run = runs[strategy]
    figures: dict[str, Any] = {
        "strategy": strategy,
        "tasks": run["tasks"],
        "mean_queue_ms": _mean_queue(run),
        "load_cv": run["load_cv"],
        "deadline_success": run["deadline_success"],
        "utilization": run["utilization"],
        "completion": run["completion"],
        "wait_cut": None,
    }
    if BASELINE in runs and strategy != BASELINE:
        figures["wait_cut"] = wait_cut(run, runs[BASELINE])
    return {"sentence": sentence(figures), "figures": figures}


def sentence(figures: Figures) -> str:
    """The summary sentence of ``summary``'s figures, on one line."""
    text = (
        f"Distributed {figures['tasks']:,} tasks: average queue time "
        f"{_ms(figures['mean_queue_ms'])}, load variance {_pct(figures['load_cv'])}, "
        f"deadline success {_pct(figures['deadline_success'])}, "
        f"utilization {_pct(figures['utilization'])}, completion {_pct(figures['completion'])}"
    )
    cut = figures.get("wait_cut")
    if cut is not None:
        verb = "cut" if cut >= 0 else "raised"
        text += (
            f"; intelligent routing ({figures['strategy']}) {verb} the mean wait by "
            f"{abs(cut):.1%} against round-robin"
        )
    return text + "."


ROWS: tuple[tuple[str, Any], ...] = (
    ("tasks", lambda r: f"{r['tasks']:,}"),
    ("completed", lambda r: f"{r['completed']:,} ({_pct(r['completion'])})"),
    ("dead letters", lambda r: f"{r['dead_lettered']:,} {_reasons(r['dead_by_reason'])}"),
    ("unsettled at the end", lambda r: f"{r['unsettled']:,}"),
    ("mean queue time", lambda r: _ms(_mean_queue(r))),
    ("p99 queue time", lambda r: _ms(r["queue_ms"]["p99"])),
    ("mean wait, every task", lambda r: _ms(r.get("mean_wait_all_ms"))),
    ("deadline success", lambda r: _pct(r["deadline_success"])),
    ("utilization", lambda r: _pct(r["utilization"])),
    ("load variance (CV)", lambda r: _pct(r["load_cv"])),
    ("priority inversions", lambda r: f"{r['inversions']:,}"),
    ("wall time", lambda r: f"{r['wall_ms'] / 1000:.0f} s"),
)


def table(runs: Mapping[str, Figures]) -> Table:
    """Both runs side by side."""
    grid = Table("", *runs, title="Delivery, measured through Kafka")
    for label, show in ROWS:
        grid.add_row(label, *(show(run) for run in runs.values()))
    return grid


def write(out_dir: Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """``demo.json`` and ``demo.png`` in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_NAME
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png_path = out_dir / PNG_NAME
    _plot(report["runs"], png_path)
    return json_path, png_path


def _plot(runs: Mapping[str, Figures], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(runs)
    figure, axes = plt.subplots(2, 2, figsize=(14, 9))
    _queue_by_priority(axes[0][0], runs)
    _against_baseline(axes[0][1], runs)
    for index, axis in enumerate((axes[1][0], axes[1][1])):
        if index < len(names):
            _load_over_time(axis, names[index], runs[names[index]])
        else:
            axis.set_axis_off()
    figure.suptitle("taskd demo: the reference workload through Kafka")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _queue_by_priority(axis: Any, runs: Mapping[str, Figures]) -> None:
    width = 0.8 / max(1, len(runs))
    for index, (name, run) in enumerate(runs.items()):
        levels = run["queue_ms_by_priority"]
        means = [max(0.1, levels[level]["mean"] or 0.1) for level in levels]
        positions = [x + index * width for x in range(len(levels))]
        axis.bar(positions, means, width, label=name)
        axis.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(levels))])
        axis.set_xticklabels(list(levels))
    axis.set_yscale("log")
    axis.set_ylabel("mean queue time (ms, log)")
    axis.set_title("Queue time by priority (p0 most urgent)")
    axis.legend()


def _against_baseline(axis: Any, runs: Mapping[str, Figures]) -> None:
    metrics = (
        ("deadline success", "deadline_success"),
        ("utilization", "utilization"),
        ("completion", "completion"),
        ("load CV", "load_cv"),
    )
    width = 0.8 / max(1, len(runs))
    for index, (name, run) in enumerate(runs.items()):
        values = [100 * (run[key] or 0) for _, key in metrics]
        axis.bar([x + index * width for x in range(len(metrics))], values, width, label=name)
    axis.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(metrics))])
    axis.set_xticklabels([label for label, _ in metrics])
    axis.set_ylabel("%")
    waits = ", ".join(f"{name} {_ms(run.get('mean_wait_all_ms'))}" for name, run in runs.items())
    axis.set_title(f"Strategy against baseline\nmean wait of every task: {waits}")
    axis.legend()


def _load_over_time(axis: Any, name: str, run: Figures) -> None:
    load = run["load_over_time"]
    step_s = load["step_ms"] / 1000
    for agent, values in load["agents"].items():
        axis.plot([step_s * (i + 0.5) for i in range(len(values))], values, label=agent)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("s since the first task")
    axis.set_ylabel("busy share of slots")
    axis.set_title(f"Load per agent over time: {name}")
    axis.legend(fontsize="small", ncol=2)


def _mean_queue(run: Figures) -> float | None:
    value = run["queue_ms"]["mean"]
    return None if value is None else float(value)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _reasons(reasons: Mapping[str, int]) -> str:
    shown = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
    return f"({shown})" if shown else ""
