"""What a run counts on its own, apart from the distributor's statistics, to check it by.

Every task must end exactly once: the tally keeps the ids of ended tasks and counts a second
end as a duplicate (which must never happen). The other counters are the simulator's view of
the run: failures drawn, retries and failovers seen, deliveries an agent had to queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.model import DeadLetterReason


@dataclass(slots=True)
class Tally:
    """Counters of one run (all plain integers, JSON-ready by ``to_dict``)."""

    completed: int = 0
    """Ended SUCCEEDED."""
    cancelled: int = 0
    dead_lettered: dict[str, int] = field(
        default_factory=lambda: {reason.value: 0 for reason in DeadLetterReason}
    )
    duplicates: int = 0
    """Tasks that ended a second time: a broken guarantee, always 0."""
    failures: int = 0
    """Runs the simulated agents ended RETRYABLE."""
    retried: int = 0
    requeued: int = 0
    """Failovers: tasks taken back from a lost agent or an expired lease."""
    overbooked: int = 0
    """Late-binding dispatches that found every slot of the agent busy and its prefetch places
    (``AgentGroup.prefetch``) taken (must stay 0)."""
    locally_queued: int = 0
    """Deliveries that waited at an agent: in its FIFO (push baselines), or prefetched."""
    lost_deliveries: int = 0
    """Assignments sent to a crashed agent (fenced by epoch in production)."""
    intake_pauses: int = 0
    stolen: int = 0
    """Held tasks one shard took from another (work stealing; sharded runs only)."""
    scaled_up: int = 0
    """Agents an autoscaler started (autoscaled runs only)."""
    scaled_down: int = 0
    """Agents an autoscaler drained (autoscaled runs only)."""
    preempted: int = 0
    """Runs stopped for a more urgent task (their task queued again, attempt not spent)."""
    preempted_run_ms: int = 0
    """The run time those had had when stopped: the work preemption lost."""
    last_end_ms: int = 0
    ended: set[str] = field(default_factory=set)

    def end(self, task_id: str, now_ms: int) -> bool:
        """Record that ``task_id`` ended; False (and a duplicate counted) if it had already."""
        if task_id in self.ended:
            self.duplicates += 1
            return False
        self.ended.add(task_id)
        self.last_end_ms = now_ms
        return True

    @property
    def dead_total(self) -> int:
        return sum(self.dead_lettered.values())

    def to_dict(self) -> dict[str, int]:
        """The counters (without the set of ended ids)."""
        return {
            "failures": self.failures,
            "retried": self.retried,
            "requeued": self.requeued,
            "duplicates": self.duplicates,
            "overbooked": self.overbooked,
            "locally_queued": self.locally_queued,
            "lost_deliveries": self.lost_deliveries,
            "intake_pauses": self.intake_pauses,
        }
