"""The figures of one run's JSON that the README quotes, flat: ``{name: number or None}``.

``demo.json`` (``taskd demo``) and ``bench.json`` (``taskd bench``) are nested and hold series
too (load over time, every probe); a repeat needs the single figures, named the same in every
run so that ``spread.spreads`` lines them up. A section a run skipped gives no figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streams.core.model import DeadLetterReason

Doc = Mapping[str, Any]
Flat = dict[str, float | None]

MIB = 2**20


def demo_figures(doc: Doc) -> Flat:
    """The summary sentence's figures, then each strategy's row of the demo's table, the same
    workload simulated and the gap between the two."""
    flat: Flat = {}
    summary = doc.get("summary")
    if isinstance(summary, Mapping):
        for key, value in summary["figures"].items():
            if key != "strategy":
                flat[f"summary.{key}"] = _number(value)
    for name, run in doc["runs"].items():
        flat.update(_run_row(name, run))
    simulated = doc.get("simulated") or {}
    if "figures" in simulated:
        sim = simulated["figures"]
        flat["simulated.mean_queue_ms"] = _number(sim["queue_ms"]["mean"])
        flat["simulated.inversions"] = _number(sim["inversions"])
    gap = (doc.get("gap") or {}).get("figures", {})
    if "mean_queue_ms" in gap:
        flat["gap.mean_queue_ms"] = _number(gap["mean_queue_ms"]["gap"])
    flat["wall_s"] = _number(doc.get("wall_s"))
    return flat


def _run_row(name: str, run: Doc) -> Flat:
    row: Flat = {
        "completed": run["completed"],
        "completion": run["completion"],
        "dead_lettered": run["dead_lettered"],
        "unsettled": run["unsettled"],
        "mean_queue_ms": run["queue_ms"]["mean"],
        "p99_queue_ms": run["queue_ms"]["p99"],
        "mean_wait_all_ms": run.get("mean_wait_all_ms"),
        "deadline_success": run["deadline_success"],
        "utilization": run["utilization"],
        "load_cv": run["load_cv"],
        "inversions": run["inversions"],
        "wall_s": run["wall_ms"] / 1000,
    }
    for level, queue in run["queue_ms_by_priority"].items():
        row[f"mean_queue_ms_{level}"] = queue["mean"]
    for reason in DeadLetterReason:  # every reason, 0 included: a run without one counted none
        row[f"dead_{reason.value}"] = run["dead_by_reason"].get(reason.value, 0)
    return {f"{name}.{key}": _number(value) for key, value in row.items()}


def bench_figures(doc: Doc) -> Flat:
    """Throughput (ours, with events, each peer, ours against each), the latency at the paced
    rates and at the peers' half rates, the sustained rate, CPU and records per task, two
    dispatcher instances against one, memory."""
    sections = doc["sections"]
    flat: Flat = {}
    pipeline = _ran(sections.get("pipeline"))
    if pipeline is not None:
        flat.update(_pipeline(pipeline))
    peers = _ran(sections.get("peers"))
    ours = flat.get("pipeline.throughput_tps")
    for peer in peers if isinstance(peers, list) else []:
        flat.update(_peer(peer, ours))
    group = _ran(sections.get("group"))
    if group is not None:
        flat.update(_group(group))
    memory = _ran(sections.get("memory"))
    if memory is not None:
        flat["memory.dispatcher_waiting_peak_mib"] = memory["dispatcher_waiting_peak_bytes"] / MIB
        flat["memory.dispatcher_idle_mib"] = memory["dispatcher_idle_bytes"] / MIB
    return flat


def _group(group: Doc) -> Flat:
    """Two instances against one: the median of the section's rounds' ratios."""
    from taskd_lab.bench.group import dispatchers_cpu, median_ratio

    return {
        "group.dispatchers_cpu_x": median_ratio(group, dispatchers_cpu),
        "group.throughput_x": median_ratio(group, lambda run: run["throughput_tps"]),
    }


def _pipeline(pipeline: Doc) -> Flat:
    flat: Flat = {}
    best, events = pipeline["throughput"], pipeline.get("with_events") or {}
    flat["pipeline.throughput_tps"] = best["throughput_tps"]
    flat["pipeline.seen_tps"] = best["seen_tps"]
    flat["pipeline.with_events.throughput_tps"] = _number(events.get("throughput_tps"))
    for run_name, run in (("pipeline", best), ("pipeline.with_events", events)):
        if not run:
            continue
        cpu = run["cpu_ms_per_task"]
        for process in ("dispatcher", "broker", "agents", "bench"):
            flat[f"{run_name}.cpu_ms.{process}"] = _number(cpu.get(process))
        flat[f"{run_name}.cpu_ms.total"] = sum(
            value for name, value in cpu.items() if name != "dispatchers"
        )
        records = run["records_per_task"]
        for topic, value in records.items():
            flat[f"{run_name}.records.{topic}"] = value
        flat[f"{run_name}.records.total"] = sum(records.values())
    for index, point in enumerate(pipeline.get("latency") or []):
        flat.update(_paced(f"pipeline.paced{index}", point))
    for index, point in enumerate(pipeline.get("at_rates") or []):
        if "skipped" not in point:
            flat.update(_paced(f"pipeline.at_peer{index}", point))
    sustained = pipeline.get("sustained") or {}
    flat["pipeline.sustained_tps"] = _number(sustained.get("rate_tps"))
    return flat


def _paced(name: str, point: Doc) -> Flat:
    flat: Flat = {f"{name}.rate_tps": point["rate_tps"]}
    for end in ("done", "seen"):
        flat[f"{name}.{end}.p50_ms"] = point[end]["p50_ms"]
        flat[f"{name}.{end}.p99_ms"] = point[end]["p99_ms"]
    return flat


def _peer(peer: Doc, ours: float | None) -> Flat:
    name = f"peers.{peer['system']}"
    tps = _number(peer.get("throughput_tps"))
    flat: Flat = {f"{name}.throughput_tps": tps}
    flat[f"{name}.ours_x"] = ours / tps if ours is not None and tps else None
    for index, point in enumerate(peer.get("latency") or []):
        flat[f"{name}.paced{index}.rate_tps"] = _number(point.get("rate_tps"))
        flat[f"{name}.paced{index}.p50_ms"] = _number(point.get("e2e_p50_ms"))
        flat[f"{name}.paced{index}.p99_ms"] = _number(point.get("e2e_p99_ms"))
    return flat


def _ran(section: Any) -> Any:
    """A section's result, None when it was not run or was skipped."""
    if section is None or (isinstance(section, Mapping) and "skipped" in section):
        return None
    return section


def _number(value: Any) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)


EXTRACTORS: dict[str, tuple[str, Callable[[Doc], Flat]]] = {
    "demo": ("demo.json", demo_figures),
    "bench": ("bench.json", bench_figures),
}
"""For each ``taskd`` command a repeat runs: the JSON it writes in ``--out`` and its figures."""
