"""A simulated run's trace as the records its topics would hold, for ``figures.compute``.

The live run's figures come from what the pipeline wrote: assignments, results, dead letters.
Turning the simulator's trace (``streams.core.sim.Trace``) into the same records lets the very
same code measure both runs, so a gap between their figures is a gap between the runs, not
between two ways of counting. The simulated run's clock starts at 0 (the first submission).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from streams.core.sim import Trace, TracedDeadLetter, TracedDispatch, TracedRun
from streams.wire import Assignment, DeadLetter, Task, TaskResult, TaskStatus
from taskd_lab.demo.figures import RunRecords


def trace_records(
    trace: Trace,
    tasks: Mapping[str, Task],
    *,
    capacities: Mapping[str, int],
    end_ms: int,
    lease_ms: int,
) -> RunRecords:
    """The records of the traced run: ``tasks`` as submitted, ``capacities`` the fleet's slots
    (the simulated agents have the live ones' ids)."""
    named = _Named(tasks, lease_ms)
    return RunRecords(
        tasks=tasks,
        assignments=[named.assignment(each) for each in trace.dispatches],
        results=[named.result(each) for each in trace.runs],
        dead_letters=[named.dead_letter(each) for each in trace.dead_letters],
        capacities=capacities,
        start_ms=0,
        end_ms=end_ms,
        killed=dict(trace.crashes),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Named:
    """Builds wire records from traced events and the submitted tasks."""

    tasks: Mapping[str, Task]
    lease_ms: int

    def task(self, task_id: str, attempt: int) -> Task:
        """The task as submitted, at this attempt (as the dispatcher sends a retry)."""
        task = self.tasks[task_id]
        return task if task.attempt == attempt else dataclasses.replace(task, attempt=attempt)

    def assignment(self, dispatch: TracedDispatch) -> Assignment:
        return Assignment(
            task=self.task(dispatch.job.task_id, dispatch.job.attempt),
            agent_id=dispatch.agent_id,
            epoch=0,
            dispatched_at=dispatch.at_ms,
            lease_ms=self.lease_ms,
            dispatcher_shard=0,
            reply_partition=0,
        )

    def result(self, run: TracedRun) -> TaskResult:
        return TaskResult(
            task_id=run.job.task_id,
            agent_id=run.agent_id,
            attempt=run.job.attempt,
            status=TaskStatus(run.status.value),
            started_at=run.started_ms,
            finished_at=run.finished_ms,
        )

    def dead_letter(self, letter: TracedDeadLetter) -> DeadLetter:
        return DeadLetter(
            task=self.task(letter.job.task_id, letter.job.attempt),
            reason=letter.reason,
            error=letter.error,
            attempts=letter.attempts,
            dead_at=letter.at_ms,
        )
