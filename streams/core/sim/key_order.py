"""Ordered keys checked on a simulated run: the runs of each ordering key, from its trace.

For every key, its tasks in arrival order (their ids ``t<index>``) and the runs the agents
took to their end (``Trace.runs``, retries included):

- a *violation* is a task whose first run started before the last run of an earlier task of
  its key ended;
- an *overlap* is a run that started before an earlier-started run of its key ended.

Both must be 0 (``docs/ordering.md``). Pure: it reads the trace.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from streams.core.sim.trace import Trace, TracedRun


@dataclass(frozen=True, slots=True)
class KeyOrder:
    """What the runs of a simulated run's ordering keys did."""

    keys: int
    """Keys with at least one run."""
    runs: int
    violations: int
    overlaps: int

    def to_dict(self) -> dict[str, int]:
        return {
            "keys": self.keys,
            "runs": self.runs,
            "violations": self.violations,
            "overlaps": self.overlaps,
        }


def key_order(trace: Trace) -> KeyOrder:
    """Count the violations and overlaps of ``trace``'s ordering keys (module docstring)."""
    by_key: dict[str, list[TracedRun]] = defaultdict(list)
    for run in trace.runs:
        key = run.job.ordering_key
        if key is not None:
            by_key[key].append(run)
    violations = overlaps = 0
    for runs in by_key.values():
        violations += _violations(runs)
        overlaps += _overlaps(runs)
    total = sum(len(runs) for runs in by_key.values())
    return KeyOrder(len(by_key), total, violations, overlaps)


def _violations(runs: list[TracedRun]) -> int:
    first_start: dict[str, int] = {}
    last_end: dict[str, int] = {}
    for run in runs:
        task_id = run.job.task_id
        first_start[task_id] = min(first_start.get(task_id, run.started_ms), run.started_ms)
        last_end[task_id] = max(last_end.get(task_id, run.finished_ms), run.finished_ms)
    count, ended_by = 0, None
    for task_id in sorted(first_start, key=_arrival):
        if ended_by is not None and first_start[task_id] < ended_by:
            count += 1
        ended_by = max(last_end[task_id], ended_by or 0)
    return count


def _overlaps(runs: list[TracedRun]) -> int:
    count, busy_until = 0, None
    for run in sorted(runs, key=lambda run: (run.started_ms, run.finished_ms)):
        if busy_until is not None and run.started_ms < busy_until:
            count += 1
        busy_until = max(run.finished_ms, busy_until or 0)
    return count


def _arrival(task_id: str) -> int:
    """The simulator names the ``index``-th arrival ``t<index>``."""
    return int(task_id[1:])
