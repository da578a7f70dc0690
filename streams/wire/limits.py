"""Size limits: what a task may carry, and records cut to fit the broker's limit.

A task over a limit (its id, type, payload or headers) is refused by the client and
dead-lettered TOO_LARGE by the dispatcher, so no record the system writes about it (the
assignment, the retry, the state, the dead letter) can exceed what the broker takes. Records
that hold many items (assignments of one pass, results of one turn) are cut into several so
that each stays under ``record_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from streams.wire.records import Assignment, Task, TaskResult

T = TypeVar("T")

FIELD_OVERHEAD_BYTES = 256
"""A bound on what a task's other fields (times, counts, skills' framing) add to its sizes."""
EXCERPT_BYTES = 4_096
"""What a dead letter keeps of a record it refuses for its size (or of an error text)."""


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """The largest task id, type, payload and headers (UTF-8 bytes) a task may have."""

    id_bytes: int = 512
    type_bytes: int = 128
    payload_bytes: int = 262_144
    headers_bytes: int = 16_384

    @property
    def task_bytes(self) -> int:
        """A bound on the encoded size of a task within the limits (its skills, zone and
        tenant included, each a few names)."""
        return (
            2 * self.id_bytes  # the affinity key and target agent are ids too
            + self.type_bytes
            + self.payload_bytes
            + 2 * self.headers_bytes  # the headers, and the tenant, zone and skills
            + FIELD_OVERHEAD_BYTES
        )

    def problem(self, task: Task) -> str | None:
        """What of ``task`` is over its limit, in one line; None when it fits."""
        ids, headers = self.id_bytes, self.headers_bytes
        sizes = (
            ("task_id", _utf8(task.task_id), ids, "max_task_id_bytes"),
            ("type", _utf8(task.type), self.type_bytes, "max_task_type_bytes"),
            ("payload", len(task.payload), self.payload_bytes, "max_payload_bytes"),
            ("headers", headers_bytes(task), headers, "max_headers_bytes"),
            ("affinity_key", _utf8(task.affinity_key), ids, "max_task_id_bytes"),
            ("target_agent", _utf8(task.target_agent), ids, "max_task_id_bytes"),
            ("tenant, zone and skills", other_bytes(task), headers, "max_headers_bytes"),
        )
        for name, size, limit, setting in sizes:
            if size > limit:
                return f"{name} is {size:,} bytes, over the limit of {limit:,} ({setting})"
        return None


def assignment_bytes(assignment: Assignment) -> int:
    """A bound on an assignment's encoded size (its task's, and the rest): for cutting a pass's
    assignments into records."""
    task = assignment.task
    texts = (task.task_id, task.type, task.affinity_key, task.target_agent, assignment.agent_id)
    variable = sum(_utf8(text) for text in texts) + headers_bytes(task) + other_bytes(task)
    return len(task.payload) + variable + FIELD_OVERHEAD_BYTES


def result_bytes(result: TaskResult) -> int:
    """A bound on a result's encoded size: for cutting a turn's results into records."""
    texts = (result.task_id, result.agent_id, result.error)
    return len(result.output or b"") + sum(_utf8(text) for text in texts) + FIELD_OVERHEAD_BYTES


def _utf8(text: str | None) -> int:
    return 0 if text is None else len(text.encode())


def headers_bytes(task: Task) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in task.headers)


def other_bytes(task: Task) -> int:
    """The tenant, zone and skills: names, each short."""
    names = (task.tenant, task.zone or "", *task.required_skills)
    return sum(len(name.encode()) for name in names)


def excerpt(data: bytes, most: int = EXCERPT_BYTES) -> bytes:
    """The first ``most`` bytes of ``data``."""
    return data if len(data) <= most else data[:most]


def shorten(text: str, most: int = EXCERPT_BYTES) -> str:
    """``text`` cut to about ``most`` characters, saying how much was cut."""
    if len(text) <= most:
        return text
    return f"{text[:most]}... ({len(text) - most:,} more characters)"


def by_size(items: Sequence[T], size_of: Callable[[T], int], most: int) -> list[list[T]]:
    """``items`` in order, cut into runs whose sizes add up to at most ``most`` (an item larger
    than ``most`` alone in its run)."""
    runs: list[list[T]] = []
    run: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if run and total + size > most:
            runs.append(run)
            run, total = [], 0
        run.append(item)
        total += size
    if run:
        runs.append(run)
    return runs
