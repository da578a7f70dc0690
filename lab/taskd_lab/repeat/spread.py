"""The median of a figure over repeated runs and how far the runs spread around it.

One run on a shared two-core machine can be off by a third (whatever else runs moves it), so a
quoted figure is the median of several runs with the lowest and highest beside it: the median
because one disturbed run cannot drag it, the range because with three to five runs it is the
honest spread (quartiles of three values say nothing more).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Spread:
    """One figure over the runs: ``values`` in run order (None where a run had none)."""

    values: tuple[float | None, ...]
    median: float | None
    low: float | None
    high: float | None

    @property
    def measured(self) -> int:
        """How many runs had the figure."""
        return sum(value is not None for value in self.values)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "values": list(self.values), "runs": self.measured}


def spread(values: Sequence[float | None]) -> Spread:
    """The median, lowest and highest of the runs that had the figure (all None when none)."""
    present = [float(value) for value in values if value is not None]
    if not present:
        return Spread(tuple(values), None, None, None)
    return Spread(tuple(values), statistics.median(present), min(present), max(present))


def spreads(runs: Sequence[Mapping[str, float | None]]) -> dict[str, Spread]:
    """Each figure named in any run, over every run (missing in a run: None), in the order the
    figures first appear."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    return {name: spread([run.get(name) for run in runs]) for name in names}


def describe(figure: Spread, unit: str = "", digits: int = 0, scale: float = 1.0) -> str:
    """``37 ms (33-41 over 3 runs)``: the median with its range, as the README quotes it;
    ``scale`` turns a share into a percentage (100)."""
    if figure.median is None or figure.low is None or figure.high is None:
        return "n/a"

    def shown(value: float) -> str:
        return f"{value * scale:,.{digits}f}"

    # a run without the figure (a sustained rate none of its probes reached) is said, not hidden
    of = f" of {len(figure.values)}" if figure.measured < len(figure.values) else ""
    if figure.measured == 1:
        return f"{shown(figure.median)}{unit} (one run{of})"
    runs = f"over {figure.measured} runs{of}"
    if shown(figure.low) == shown(figure.high):
        return f"{shown(figure.median)}{unit} (the same in each, {runs})"
    return f"{shown(figure.median)}{unit} ({shown(figure.low)}-{shown(figure.high)} {runs})"
