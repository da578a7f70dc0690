"""The report's tables of what our pipeline carries for good and what it costs: the sustained
rate and its probes, CPU per task per process, Kafka records per task per topic (each next to
the same figure with lifecycle events on). Each takes the pipeline section of ``bench.json``
(None: it did not run) and gives a markdown section or None."""

from __future__ import annotations

from typing import Any

Ours = dict[str, Any] | None
PROCESSES = {
    "dispatcher": "dispatcher",
    "broker": "Kafka broker (`kafka.Kafka`, every client of it)",
    "agents": "agents, all of them",
    "bench": "benchmark process: producer and observer",
}


def sustained_table(ours: Ours) -> str | None:
    """The sustained rate and every probe of its search."""
    if ours is None or "sustained" not in ours:
        return None
    found, maximum = ours["sustained"], ours["throughput"]["throughput_tps"]
    rate = found["rate_tps"]
    verdict = (
        f"**{rate:,.0f} tasks/s**, {rate / maximum:.0%} of the burst maximum ({maximum:,.0f}/s)"
        if rate
        else f"**none found**: every probe failed, the lowest at {_lowest(found):,.0f}/s"
    )
    rows = [
        "| probe | rate/s | tasks | p50 / p99 ms, due → seen | backlog at the end (bound) "
        "| verdict |",
        "|---|---|---|---|---|---|",
    ]
    for i, probe in enumerate(found["probes"], 1):
        rows.append(
            f"| {i} | {probe['rate_tps']:,.0f} | {probe['count']:,} | "
            f"{probe['p50_ms']:,.1f} / {probe['p99_ms']:,.1f} | "
            f"{probe['backlog']:,} ({probe['bound']:,}) | {'pass' if probe['passed'] else 'fail'} |"
        )
    return (
        "## Sustained rate\n\n"
        f"The highest paced rate our pipeline carries for {found['seconds']:g} s with its "
        f"backlog (tasks submitted minus results seen) below {found['backlog_s']:g} s of "
        f"arrivals at the end and a p99 (due → result seen) of at most "
        f"{found['p99_limit_ms']:g} ms: {verdict}. Probes bisect between 0 and the maximum, "
        "the first at half of it.\n\n" + "\n".join(rows) + "\n"
    )


def _lowest(found: dict[str, Any]) -> float:
    return float(min(probe["rate_tps"] for probe in found["probes"]))


def cpu_table(ours: Ours) -> str | None:
    """CPU milliseconds per task of each process, default and with lifecycle events."""
    if ours is None:
        return None
    runs = _runs(ours)
    rows = _head(["process", "CPU ms per task"], runs)
    rows.append(_row("throughput, tasks/s", [f"{run['throughput_tps']:,.0f}" for run in runs]))
    for name, label in PROCESSES.items():
        if all(name in run["cpu_ms_per_task"] for run in runs):
            rows.append(_row(label, [_cpu(run["cpu_ms_per_task"][name]) for run in runs]))
    for i, agent in enumerate(ours["throughput"]["agents"]):
        cells = [_agent_cpu(_nth_agent(run, i)) for run in runs]
        rows.append(
            _row(f"agent {agent['agent']}: per task (per task it ran; tasks it ran)", cells)
        )
    total = [_cpu(sum(run["cpu_ms_per_task"].values())) for run in runs]
    rows.append(_row("every process above", total))
    return (
        "## CPU per task\n\n"
        "CPU time (user + system) of each process over the throughput run, divided by its "
        "tasks. The benchmark process also runs the observer that reads `dispatch` and "
        "`results`.\n\n" + "\n".join(rows) + "\n"
    )


def _nth_agent(run: dict[str, Any], index: int) -> dict[str, Any] | None:
    agents = run["agents"]
    return agents[index] if index < len(agents) else None


def _agent_cpu(agent: dict[str, Any] | None) -> str:
    if agent is None:
        return "-"
    ran = agent["cpu_ms_per_task_ran"]
    each = "-" if ran is None else _cpu(ran)
    return f"{_cpu(agent['cpu_ms_per_task'])} ({each}; {agent['ran']:,})"


def records_table(ours: Ours) -> str | None:
    """Kafka records written per task to each topic, default and with lifecycle events."""
    if ours is None:
        return None
    runs = _runs(ours)
    rows = _head(["topic", "records per task"], runs)
    for topic in ours["throughput"]["records_per_task"]:
        rows.append(_row(f"`{topic}`", [f"{run['records_per_task'][topic]:.3f}" for run in runs]))
    rows.append(
        _row("all of them", [f"{sum(run['records_per_task'].values()):.3f}" for run in runs])
    )
    return (
        "## Kafka records per task\n\n"
        "Records written to each of our topics over the throughput run (the growth of its "
        "high watermarks), divided by its tasks.\n\n" + "\n".join(rows) + "\n"
    )


def _runs(ours: dict[str, Any]) -> list[dict[str, Any]]:
    """The default throughput run, and the one with lifecycle events when there is one."""
    return [ours["throughput"], *([ours["with_events"]] if "with_events" in ours else [])]


def _head(columns: list[str], runs: list[dict[str, Any]]) -> list[str]:
    """A table's head: its columns, and one more for the run with lifecycle events."""
    names = columns + ["with `--events`"] * (len(runs) - 1)
    return [_row(names[0], names[1:]), "|---" * len(names) + "|"]


def _row(label: str, cells: list[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def _cpu(ms: float) -> str:
    return f"{ms:.3f}"
