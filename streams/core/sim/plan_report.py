"""A capacity plan as a table and as JSON (``taskd plan``'s output).

``plan_table`` gives one row per fleet tried, in the order tried: its step, its agents per
group, their cost per hour, the figures the SLO bounds and whether it met the SLO.
``plan_dict`` is the JSON of ``taskd plan --json``: the same scenario, seed and SLO give the
same bytes (no wall-clock figure is in it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from streams.core.sim.plan import ClosedForm, Plan, Trial
from streams.core.sim.slo import Figures


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    # Two decimals: an SLO of 99.9% is decided in the second one.
    return "-" if value is None else f"{100 * value:.2f}%"


_COLUMNS: dict[str, tuple[str, Callable[[Figures], str]]] = {
    "mean_queue": ("mean q ms", lambda f: _ms(f.mean_queue_ms)),
    "p50_queue": ("p50 q ms", lambda f: _ms(f.p50_queue_ms)),
    "p99_queue": ("p99 q ms", lambda f: _ms(f.p99_queue_ms)),
    "deadline": ("deadline ok", lambda f: _pct(f.deadline)),
    "completion": ("completed", lambda f: _pct(f.completion)),
    "utilization": ("util", lambda f: _pct(f.utilization)),
}
"""The column of each metric an SLO may bound: its header and how a figure shows."""


def _cost(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def plan_table(plan: Plan) -> tuple[list[str], list[list[str]]]:
    """Headers and one row of text per fleet tried."""
    metrics = plan.slo.metrics
    headers = [
        "run",
        "step",
        *(group.name for group in plan.groups),
        "agents",
        "cost/h",
        *(_COLUMNS[metric][0] for metric in metrics),
        "SLO",
    ]
    rows = []
    for number, trial in enumerate(plan.trials, 1):
        answer = " <- answer" if trial is plan.answer else ""
        rows.append(
            [
                str(number),
                trial.step,
                *(f"{count:,}" for count in trial.counts),
                f"{trial.agents:,}",
                _cost(trial.cost_per_hour),
                *(_COLUMNS[metric][1](trial.figures) for metric in metrics),
                ("met" if trial.met else "missed") + answer,
            ]
        )
    return headers, rows


def closed_form_line(closed: ClosedForm, plan: Plan) -> str:
    """One sentence: what Erlang C answers, and how the plan's answer compares."""
    figures = closed.figures
    shown = ", ".join(f"{_COLUMNS[m][0]} {_COLUMNS[m][1](figures)}" for m in plan.slo.metrics)
    line = (
        f"Erlang C ({closed.model}, arrivals {closed.arrival_per_s:g}/s, service "
        f"{closed.service_per_s:g}/s per slot): {closed.agents} agents ({shown})"
    )
    if plan.answer is None:
        return f"{line}; the plan found none"
    gap = plan.answer.agents - closed.agents
    return f"{line}; the plan: {plan.answer.agents}" + (
        " (the same)" if gap == 0 else f" ({gap:+d})"
    )


def _fleet(plan: Plan, trial: Trial) -> dict[str, object]:
    return {
        "agents": {g.name: n for g, n in zip(plan.groups, trial.counts, strict=True)},
        "total": trial.agents,
        "cost_per_hour": round(trial.cost_per_hour, 6),
        "figures": trial.figures.to_dict(),
        "met": trial.met,
    }


def plan_dict(plan: Plan, closed: ClosedForm | None = None) -> dict[str, object]:
    """Everything the plan found, JSON-ready (see the module docstring)."""
    scenario = plan.scenario
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "tasks": plan.tasks,
        "strategy": plan.strategy,
        "slo": [
            {"metric": o.metric, "op": o.op, "value": o.value, "text": o.text}
            for o in plan.slo.objectives
        ],
        "groups": [
            {
                "name": group.name,
                "count_in_scenario": group.count,
                "capacity": group.capacity,
                "speed": group.speed,
                "cost_per_hour": group.cost_per_hour,
            }
            for group in plan.groups
        ],
        "trials": [{"step": trial.step, **_fleet(plan, trial)} for trial in plan.trials],
        "answer": None if plan.answer is None else _fleet(plan, plan.answer),
        "complete": plan.complete,
        "verdict": plan.verdict,
        "closed_form": None
        if closed is None
        else {
            "model": closed.model,
            "arrival_per_s": closed.arrival_per_s,
            "service_per_s": closed.service_per_s,
            "agents": closed.agents,
            "figures": closed.figures.to_dict(),
        },
    }


def plan_json(plan: Plan, closed: ClosedForm | None = None) -> str:
    """The plan as indented JSON."""
    return json.dumps(plan_dict(plan, closed), indent=2)
