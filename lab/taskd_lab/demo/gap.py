"""The live run against the same plan simulated: both figures, the gap, and the goals.

Both runs are measured by the same code (``figures.compute``: the live run from its topics, the
simulated one from the records its trace stands for, ``sim_records``), so the gap, live minus
simulated in the figure's own unit, is what real processes talking through Kafka cost over
the ideal the same core reaches on its own (``simulated`` says what the simulation leaves
out). The goals, the issue's:

- the live mean queue time is at most the simulated one + ``QUEUE_SLACK_MS``;
- the live priority inversions are at most ``INVERSION_SHARE`` of the tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.table import Table

QUEUE_SLACK_MS = 25.0
INVERSION_SHARE = 0.001

Figures = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Measure:
    """One figure compared: its key in the JSON, its label, its unit, how to read it."""

    key: str
    label: str
    unit: str
    """``ms``, ``share`` (0..1) or ``count``."""
    pick: Callable[[Figures], float | None]


def measures(levels: list[str]) -> tuple[Measure, ...]:
    """The figures compared, with the mean queue time of each priority level in ``levels``."""
    by_level = tuple(
        Measure(f"mean_queue_ms_{level}", f"  mean queue time {level}", "ms", _level_mean(level))
        for level in levels
    )
    return (
        Measure("mean_queue_ms", "mean queue time", "ms", lambda f: f["queue_ms"]["mean"]),
        Measure("p99_queue_ms", "p99 queue time", "ms", lambda f: f["queue_ms"]["p99"]),
        *by_level,
        Measure("utilization", "utilization", "share", lambda f: f["utilization"]),
        Measure("deadline_success", "deadline success", "share", lambda f: f["deadline_success"]),
        Measure("inversions", "priority inversions", "count", lambda f: f["inversions"]),
        Measure("inversion_share", "  share of tasks", "share", inversion_share),
        Measure("completed", "completed", "count", lambda f: f["completed"]),
    )


def inversion_share(figures: Figures) -> float | None:
    tasks = figures["tasks"]
    return round(figures["inversions"] / tasks, 6) if tasks else None


def compare(live: Figures, simulated: Figures) -> dict[str, Any]:
    """``{"figures": {key: {"live", "simulated", "gap"}}, "goals": {...}}``, JSON-ready."""
    rows = {m.key: _row(m.pick(live), m.pick(simulated), m.unit) for m in measures(_levels(live))}
    return {"figures": rows, "goals": goals(live, simulated)}


def goals(live: Figures, simulated: Figures) -> dict[str, dict[str, Any]]:
    """Each goal: what it says, the live figure, the limit it must stay within, whether it does
    (``None`` when a run has no figure to judge by)."""
    mean_live, mean_sim = live["queue_ms"]["mean"], simulated["queue_ms"]["mean"]
    queue_limit = None if mean_sim is None else round(mean_sim + QUEUE_SLACK_MS, 1)
    inversion_limit = INVERSION_SHARE * live["tasks"]
    return {
        "queue": {
            "goal": f"live mean queue time <= simulated + {QUEUE_SLACK_MS:g} ms",
            "live": mean_live,
            "limit": queue_limit,
            "holds": None if mean_live is None or queue_limit is None else mean_live <= queue_limit,
        },
        "inversions": {
            "goal": f"inversions <= {100 * INVERSION_SHARE:g}% of tasks",
            "live": live["inversions"],
            "limit": round(inversion_limit, 1),
            "holds": live["inversions"] <= inversion_limit,
        },
    }


def table(gap: Mapping[str, Any], strategy: str) -> Table:
    """The figures of ``compare`` side by side, with the gap."""
    grid = Table(
        "",
        "live (Kafka)",
        "simulated",
        "gap (live - sim)",
        title=f"Live against simulated: {strategy}, the same fleet and workload",
    )
    rows = gap["figures"]
    for measure in measures(_levels_of(rows)):
        row = rows[measure.key]
        grid.add_row(
            measure.label,
            _show(row["live"], measure.unit),
            _show(row["simulated"], measure.unit),
            _show(row["gap"], measure.unit, signed=True),
        )
    return grid


def goal_lines(gap: Mapping[str, Any]) -> list[str]:
    """One line per goal: the goal with its limit, the live figure, whether it holds."""
    queue, inversions = gap["goals"]["queue"], gap["goals"]["inversions"]
    share = gap["figures"]["inversion_share"]["live"]
    return [
        f"goal: {queue['goal']} ({_show(queue['limit'], 'ms')}): "
        f"{_show(queue['live'], 'ms')}, {_verdict(queue['holds'])}",
        f"goal: {inversions['goal']} ({inversions['limit']:,.1f}): "
        f"{inversions['live']:,} ({_show(share, 'share')}), {_verdict(inversions['holds'])}",
    ]


def model_line(model: Mapping[str, Any]) -> str:
    """What the simulated run is, in one line."""
    extra = sorted(set(model["prefetch"].values())) or [0]
    crashes = " ".join(
        f"{agent} crashes at {at / 1000:.1f} s;" for agent, at in model["crash_at_ms"].items()
    )
    return (
        f"simulated: the same {len(model['prefetch'])} agents and {model['tasks']:,} tasks, "
        f"{model['strategy']}, the live dispatcher's settings and prefetch "
        f"({model['prefetch_share']:.0%} of the slots: +{extra[0]} to +{extra[-1]} per agent); "
        f"{crashes} {model['hops']}."
    )


def _row(live: float | None, simulated: float | None, unit: str) -> dict[str, Any]:
    digits = 4 if unit == "share" else 1
    gap = None if live is None or simulated is None else round(live - simulated, digits)
    return {"live": live, "simulated": simulated, "gap": gap}


def _levels(figures: Figures) -> list[str]:
    return list(figures["queue_ms_by_priority"])


def _levels_of(rows: Mapping[str, Any]) -> list[str]:
    prefix = "mean_queue_ms_"
    return [key.removeprefix(prefix) for key in rows if key.startswith(prefix)]


def _level_mean(level: str) -> Callable[[Figures], float | None]:
    def pick(figures: Figures) -> float | None:
        value = figures["queue_ms_by_priority"].get(level, {}).get("mean")
        return None if value is None else float(value)

    return pick


def _show(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    if unit == "ms":
        return f"{value:{sign},.1f} ms"
    if unit == "share":
        return f"{100 * value:{sign}.2f}" + (" pts" if signed else "%")
    return f"{value:{sign},.0f}"


def _verdict(holds: bool | None) -> str:
    return {True: "holds", False: "does NOT hold", None: "cannot tell"}[holds]
