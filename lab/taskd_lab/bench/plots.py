"""PNG plots of a ``taskd bench`` run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after use("Agg"): no display needed

Doc = dict[str, Any]


def write_plots(doc: Doc, out_dir: Path) -> list[Path]:
    """Throughput bars, latency against rate, memory bars: the files written."""
    written = []
    for name, draw in (
        ("throughput", _throughput),
        ("latency", _latency),
        ("memory", _memory),
    ):
        figure, axes = plt.subplots(figsize=(8, 4.5))
        try:
            if draw(doc, axes):
                path = out_dir / f"{name}.png"
                figure.tight_layout()
                figure.savefig(path, dpi=110)
                written.append(path)
        finally:
            plt.close(figure)
    return written


def _pipeline(doc: Doc) -> dict[str, Any] | None:
    ours = doc["sections"].get("pipeline")
    return ours if isinstance(ours, dict) and "throughput" in ours else None


def _list(doc: Doc, name: str) -> list[dict[str, Any]]:
    value = doc["sections"].get(name)
    return value if isinstance(value, list) else []


def _throughput(doc: Doc, axes: Any) -> bool:
    bars: list[tuple[str, float]] = []
    if (ours := _pipeline(doc)) is not None:
        bars.append(("ours", ours["throughput"]["throughput_tps"]))
        if "with_events" in ours:
            bars.append(("ours --events", ours["with_events"]["throughput_tps"]))
    bars += [(e["system"], e["throughput_tps"]) for e in _list(doc, "floor")]
    bars += [(e["system"], float(e["throughput_tps"])) for e in _list(doc, "peers")]
    if not bars:
        return False
    axes.bar([name for name, _ in bars], [value for _, value in bars], color="tab:blue")
    axes.tick_params(axis="x", labelrotation=20)
    axes.set_yscale("log")
    axes.set_ylabel("tasks / s (log)")
    axes.set_title("Throughput, no-op tasks")
    return True


def _latency(doc: Doc, axes: Any) -> bool:
    lines: list[tuple[str, list[dict[str, Any]]]] = []
    if (ours := _pipeline(doc)) is not None:
        for end in ("seen", "done", "dispatch"):
            lines.append((f"ours {end}", [p[end] for p in ours["latency"]]))
    lines += [(e["system"], e["latency"]) for e in _list(doc, "floor")]
    if not lines:
        return False
    for name, points in lines:
        rates = [p["rate_tps"] for p in points]
        shown = axes.plot(rates, [p["p50_ms"] for p in points], marker="o", label=f"{name} p50")
        axes.plot(
            rates,
            [p["p99_ms"] for p in points],
            marker="x",
            linestyle="--",
            color=shown[0].get_color(),
            label=f"{name} p99",
        )
    axes.set_yscale("log")
    axes.set_xlabel("offered rate, tasks / s")
    axes.set_ylabel("latency ms (log)")
    axes.set_title("Latency at paced rates")
    axes.legend(fontsize=7, ncol=2)
    return True


def _memory(doc: Doc, axes: Any) -> bool:
    bars: list[tuple[str, float]] = []
    if (ours := _pipeline(doc)) is not None:
        bars.append(("dispatcher steady", ours["rss"]["dispatcher_peak_bytes"]))
        bars.append(("agent steady", ours["rss"]["agent_peak_bytes"]))
    memory = doc["sections"].get("memory")
    if isinstance(memory, dict) and "dispatcher_idle_bytes" in memory:
        bars.append(("dispatcher idle", memory["dispatcher_idle_bytes"]))
        label = f"dispatcher {memory['waiting_tasks']:,} held"
        bars.append((label, memory["dispatcher_waiting_peak_bytes"]))
    if not bars:
        return False
    axes.bar([n for n, _ in bars], [v / 2**20 for _, v in bars], color="tab:green")
    axes.set_ylabel("RSS MiB")
    axes.set_title("Memory")
    return True
