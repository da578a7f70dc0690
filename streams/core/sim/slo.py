"""Service-level objectives for capacity planning: parsed from text, checked on a run's figures.

An SLO is terms joined by commas, each ``METRIC OP VALUE`` (spaces allowed)::

    p99_queue<500ms, deadline>99%

=============  =========  ===========  ==========================================================
metric         value      comparisons  the figure of a run it bounds
=============  =========  ===========  ==========================================================
mean_queue     ms or s    < <=         mean queue time (submitted to first start)
p50_queue      ms or s    < <=         its median (nearest rank)
p99_queue      ms or s    < <=         its 99th percentile (nearest rank)
deadline       %          > >=         tasks with a deadline that started by it
completion     %          > >=         tasks completed (not dead-lettered nor left unfinished)
utilization    %          < <= > >=    busy over available slot-time (``taskd simulate``'s util)
=============  =========  ===========  ==========================================================

The figures are the whole run's, as ``taskd simulate`` shows them. Every bound but a lower one
on utilization is one that more agents help to meet (``Objective.helped``): the planner
searches on those; ``utilization>X`` gets harder with every agent added, so it is checked on the
fleet found for the rest, the smallest there is: if that one fails it, so would a larger one.

``parse_slo`` names every mistake in its own line (:class:`SloError` keeps them apart).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from streams.core.sim.result import RunResult
from streams.errors import ConfigError

TIME = "time"
PERCENT = "percent"

METRICS: dict[str, str] = {
    "mean_queue": TIME,
    "p50_queue": TIME,
    "p99_queue": TIME,
    "deadline": PERCENT,
    "completion": PERCENT,
    "utilization": PERCENT,
}
"""Every metric an SLO may bound, and the kind of value it takes."""

_UPPER = ("<", "<=")
_LOWER = (">", ">=")
_COMPARISONS: dict[str, tuple[str, ...]] = {
    "mean_queue": _UPPER,
    "p50_queue": _UPPER,
    "p99_queue": _UPPER,
    "deadline": _LOWER,
    "completion": _LOWER,
    "utilization": _UPPER + _LOWER,
}
_TIME_UNITS = {"ms": 1.0, "s": 1000.0}

_TERM = re.compile(r"^\s*([A-Za-z0-9_]*)\s*([<>=!]*)\s*(.*?)\s*$")
_VALUE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z%]*)$")


class SloError(ConfigError):
    """An SLO that does not parse; ``mistakes``: one line for each."""

    def __init__(self, mistakes: list[str]) -> None:
        super().__init__("; ".join(mistakes))
        self.mistakes = tuple(mistakes)


@dataclass(frozen=True, slots=True)
class Figures:
    """What one run measured, for the metrics an SLO may bound (ms, and ratios in [0, 1])."""

    mean_queue_ms: float | None
    p50_queue_ms: float | None
    p99_queue_ms: float | None
    """Whole milliseconds from a run; infinite from theory for a fleet too small to keep up."""
    deadline: float | None
    """``None``: no task had a deadline."""
    completion: float
    utilization: float

    @classmethod
    def of(cls, result: RunResult) -> Figures:
        summary = result.summary
        return cls(
            mean_queue_ms=summary.mean_queue_ms,
            p50_queue_ms=summary.p50_queue_ms,
            p99_queue_ms=summary.p99_queue_ms,
            deadline=summary.deadline_success,
            completion=result.tally.completed / result.tasks if result.tasks else 1.0,
            utilization=result.run_utilization,
        )

    def value(self, metric: str) -> float | None:
        """The figure ``metric`` bounds (ms, or a ratio for a percentage)."""
        match metric:
            case "mean_queue":
                return self.mean_queue_ms
            case "p50_queue":
                return self.p50_queue_ms
            case "p99_queue":
                return self.p99_queue_ms
            case "deadline":
                return self.deadline
            case "completion":
                return self.completion
            case "utilization":
                return self.utilization
        raise ConfigError(f"unknown metric {metric!r}")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ms to 0.1, ratios to 4 places, an infinite wait as ``None``."""
        return {
            "mean_queue_ms": _rounded(self.mean_queue_ms, 1),
            "p50_queue_ms": _rounded(self.p50_queue_ms, 1),
            "p99_queue_ms": _rounded(self.p99_queue_ms, 1),
            "deadline": _rounded(self.deadline, 4),
            "completion": _rounded(self.completion, 4),
            "utilization": _rounded(self.utilization, 4),
        }


def _unit(unit: str) -> str:
    return f"bad unit {unit!r}" if unit else "no unit"


def _rounded(value: float | None, places: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, places)


@dataclass(frozen=True, slots=True)
class Objective:
    """One term: ``metric op value``, the value in ms (times) or as a ratio (percentages)."""

    metric: str
    op: str
    value: float
    text: str
    """As the user wrote it, spaces removed."""

    @property
    def upper(self) -> bool:
        """A bound from above (``<``, ``<=``)."""
        return self.op in _UPPER

    @property
    def helped(self) -> bool:
        """More agents can only help to meet it (all but a lower bound on utilization)."""
        return self.metric != "utilization" or self.upper

    def met(self, figures: Figures) -> bool:
        """Whether the run's figure is within the bound (a missing figure never is)."""
        figure = figures.value(self.metric)
        if figure is None or math.isnan(figure):
            return False
        if self.metric in ("deadline", "completion", "utilization"):
            # Ratios computed from counts: compare at a precision a percentage can state, so
            # that 99% met by 99 tasks of 100 is met whatever the float rounding.
            figure = round(figure, 9)
        match self.op:
            case "<":
                return figure < self.value
            case "<=":
                return figure <= self.value
            case ">":
                return figure > self.value
        return figure >= self.value


@dataclass(frozen=True, slots=True)
class Slo:
    """The objectives of a plan, all of which a fleet must meet."""

    objectives: tuple[Objective, ...]

    @property
    def text(self) -> str:
        return ",".join(objective.text for objective in self.objectives)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics bounded, once each, in the order written."""
        return tuple(dict.fromkeys(objective.metric for objective in self.objectives))

    def met(self, figures: Figures) -> bool:
        return all(objective.met(figures) for objective in self.objectives)

    def helped_met(self, figures: Figures) -> bool:
        """The objectives more agents help to meet are met (what the planner searches on)."""
        return all(o.met(figures) for o in self.objectives if o.helped)

    def missed(self, figures: Figures) -> tuple[Objective, ...]:
        return tuple(o for o in self.objectives if not o.met(figures))


def parse_slo(text: str) -> Slo:
    """Parse ``METRIC OP VALUE[,...]``; raise :class:`SloError` naming every mistake."""
    objectives: list[Objective] = []
    mistakes: list[str] = []
    terms = text.split(",")
    for term in terms:
        try:
            objectives.append(_objective(term))
        except ConfigError as error:
            mistakes.append(str(error))
    seen: set[tuple[str, bool]] = set()
    for objective in objectives:
        key = (objective.metric, objective.upper)
        if key in seen:
            side = "above" if objective.upper else "below"
            mistakes.append(f"{objective.metric} is bounded from {side} twice")
        seen.add(key)
    if mistakes:
        raise SloError(mistakes)
    return Slo(tuple(objectives))


def _objective(term: str) -> Objective:
    shown = term.strip()
    if not shown:
        raise ConfigError("an empty term (two commas in a row, or one at an end)")
    match = _TERM.match(term)
    assert match is not None  # the pattern matches any text
    metric, op, value = match.groups()
    if metric not in METRICS:
        known = ", ".join(METRICS)
        raise ConfigError(f"{shown!r}: unknown metric {metric!r} (known: {known})")
    valid = _COMPARISONS[metric]
    if op not in valid:
        problem = "no comparison" if not op else f"bad comparison {op!r}"
        raise ConfigError(f"{shown!r}: {problem}: {metric} takes {' or '.join(valid)}")
    number = _VALUE.match(value)
    if number is None:
        raise ConfigError(f"{shown!r}: expected a number and its unit after {op!r}, got {value!r}")
    amount, unit = float(number.group(1)), number.group(2)
    if METRICS[metric] == TIME:
        if unit not in _TIME_UNITS:
            raise ConfigError(f"{shown!r}: {_unit(unit)}: {metric} takes ms or s")
        bound = amount * _TIME_UNITS[unit]
    else:
        if unit != "%":
            raise ConfigError(f"{shown!r}: {_unit(unit)}: {metric} takes a percentage (%)")
        if amount > 100:
            raise ConfigError(f"{shown!r}: {metric} is at most 100%, got {amount:g}%")
        bound = amount / 100
    return Objective(metric, op, bound, "".join(shown.split()))
