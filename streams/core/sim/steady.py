"""Figures of the steady state: what a run measures once its warm-up is over.

A run starts with every slot free, so its first tasks never wait: at 90% load the fleet needs
a few of its longest mean run times to fill up, and until then it queues far less than it will.
Comparing variants on whole-run means mixes that warm-up in (the same for all, but it dilutes
the differences). With ``warmup_ms`` set, a run also measures only the tasks submitted at or
after it (their queue time: submitted to first start) and the fleet's utilization from then to
the last arrival: the steady state, the figures a long-running fleet would show.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from streams.core.stats import nearest_rank


@dataclass(frozen=True, slots=True)
class LevelWait:
    """Queue times of the tasks of one priority level (ms)."""

    count: int
    mean_ms: float | None
    p99_ms: int | None


@dataclass(frozen=True, slots=True)
class Steady:
    """The steady-state figures of a run (see the module docstring)."""

    warmup_ms: int
    tasks: int
    """Tasks submitted at or after ``warmup_ms`` that started."""
    mean_queue_ms: float | None
    p99_queue_ms: int | None
    by_level: tuple[LevelWait, ...]
    utilization: float
    """Busy over available slot-time from ``warmup_ms`` to the last arrival."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, ms rounded to 0.01 (steady waits are often well under 1 ms)."""
        return {
            "warmup_ms": self.warmup_ms,
            "tasks": self.tasks,
            "mean_queue_ms": _ms(self.mean_queue_ms),
            "p99_queue_ms": self.p99_queue_ms,
            "queue_ms_by_priority": {
                f"p{level}": {"count": wait.count, "mean": _ms(wait.mean_ms), "p99": wait.p99_ms}
                for level, wait in enumerate(self.by_level)
            },
            "utilization": round(self.utilization, 4),
        }


class SteadyWindow:
    """Collects a run's steady-state samples as the engine goes."""

    __slots__ = ("_levels", "slot_ms_at_warmup", "warmup_ms")

    def __init__(self, warmup_ms: int, levels: int) -> None:
        self.warmup_ms = warmup_ms
        self._levels = [array("q") for _ in range(levels)]
        self.slot_ms_at_warmup: tuple[int, int] | None = None
        """(busy, available) slot-ms of the fleet at ``warmup_ms``; set by the engine."""

    def started(self, priority: int, submitted_ms: int, queue_ms: int) -> None:
        """A task started for the first time; counted if submitted after the warm-up."""
        if submitted_ms >= self.warmup_ms:
            self._levels[priority].append(queue_ms)

    def figures(self, slot_ms_at_end: tuple[int, int]) -> Steady:
        """The figures, given the fleet's (busy, available) slot-ms at the last arrival."""
        start = self.slot_ms_at_warmup or (0, 0)
        busy, available = (slot_ms_at_end[0] - start[0], slot_ms_at_end[1] - start[1])
        every = sorted(value for level in self._levels for value in level)
        return Steady(
            warmup_ms=self.warmup_ms,
            tasks=len(every),
            mean_queue_ms=sum(every) / len(every) if every else None,
            p99_queue_ms=nearest_rank(every, 99) if every else None,
            by_level=tuple(_level(samples) for samples in self._levels),
            utilization=busy / available if available > 0 else 0.0,
        )


def _level(samples: array[int]) -> LevelWait:
    if not samples:
        return LevelWait(0, None, None)
    ordered = sorted(samples)
    return LevelWait(len(ordered), sum(ordered) / len(ordered), nearest_rank(ordered, 99))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
