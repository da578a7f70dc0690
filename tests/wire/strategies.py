"""Hypothesis strategies for the wire records: anything the schemas can carry, or valid tasks."""

from __future__ import annotations

from hypothesis import strategies as st

from streams.core.model import DeadLetterReason
from streams.wire.records import (
    AgentHeartbeat,
    AgentRegistration,
    AgentStatus,
    Assignment,
    CancelRequest,
    DeadLetter,
    DispatcherStatus,
    OutcomeStatus,
    RegistrationStatus,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskOutcome,
    TaskResult,
    TaskStatus,
    WireRecord,
)

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
TIMES_MS = st.integers(0, 2**63 - 1)
DOUBLES = st.floats(allow_nan=False)
"""NaN is left out only because it is never equal to itself, so a round trip can't compare it."""
NAMES = st.text(max_size=12)
SHORT_TEXT = st.text(max_size=40)
SKILLS = st.lists(NAMES, max_size=4).map(tuple)
HEADERS = st.dictionaries(NAMES, SHORT_TEXT, max_size=4).map(lambda d: tuple(d.items()))


def tasks(
    *,
    priorities: st.SearchStrategy[int] = INT32,
    times_ms: st.SearchStrategy[int] = INT64,
    counts: st.SearchStrategy[int] = INT32,
    costs: st.SearchStrategy[float] = DOUBLES,
    payloads: st.SearchStrategy[bytes] | None = None,
    ids: st.SearchStrategy[str] = SHORT_TEXT,
) -> st.SearchStrategy[Task]:
    """Tasks; by default anything the Avro schema can carry, valid or not."""
    return st.builds(
        Task,
        task_id=ids,
        type=ids,
        priority=priorities,
        payload=st.binary(max_size=64) if payloads is None else payloads,
        tenant=NAMES,
        affinity_key=st.none() | NAMES,
        required_skills=SKILLS,
        zone=st.none() | NAMES,
        target_agent=st.none() | NAMES,
        submitted_at=times_ms,
        deadline=st.none() | times_ms,
        ttl_ms=st.none() | times_ms,
        max_attempts=counts,
        attempt=counts,
        cost=st.none() | costs,
        headers=HEADERS,
    )


def valid_tasks(levels: int = 4) -> st.SearchStrategy[Task]:
    """Tasks that validate_task accepts for ``levels`` priority levels."""
    return tasks(
        priorities=st.integers(0, levels - 1),
        times_ms=st.integers(0, 2**62),
        counts=st.integers(1, 2**31 - 1),
        costs=st.floats(min_value=0, allow_infinity=False, allow_nan=False),
        ids=st.text(min_size=1, max_size=40),
    )


def assignments() -> st.SearchStrategy[Assignment]:
    return st.builds(
        Assignment,
        task=tasks(),
        agent_id=NAMES,
        epoch=INT64,
        dispatched_at=INT64,
        lease_ms=INT64,
        dispatcher_shard=INT32,
        reply_partition=INT32,
    )


def task_results() -> st.SearchStrategy[TaskResult]:
    return st.builds(
        TaskResult,
        task_id=SHORT_TEXT,
        agent_id=NAMES,
        attempt=INT32,
        status=st.sampled_from(TaskStatus),
        error=st.none() | SHORT_TEXT,
        started_at=INT64,
        finished_at=INT64,
        output=st.none() | st.binary(max_size=64),
    )


def heartbeats() -> st.SearchStrategy[AgentHeartbeat]:
    return st.builds(
        AgentHeartbeat,
        agent_id=NAMES,
        capacity=INT32,
        skills=SKILLS,
        zone=st.none() | NAMES,
        weight=DOUBLES,
        cost_per_task=DOUBLES,
        status=st.sampled_from(AgentStatus),
        in_flight=INT32,
        completed=INT64,
        sent_at=INT64,
        task_types=st.none() | st.lists(NAMES, max_size=4).map(tuple),
        batch_max_size=st.dictionaries(NAMES, INT32, max_size=3).map(lambda d: tuple(d.items())),
        batch_max_wait_ms=st.dictionaries(NAMES, INT32, max_size=3).map(lambda d: tuple(d.items())),
    )


def dead_letters() -> st.SearchStrategy[DeadLetter]:
    return st.builds(
        DeadLetter,
        task=st.none() | tasks(),
        raw=st.none() | st.binary(max_size=64),
        reason=st.sampled_from(DeadLetterReason),
        error=SHORT_TEXT,
        attempts=INT32,
        source_topic=st.none() | NAMES,
        source_partition=st.none() | INT32,
        source_offset=st.none() | INT64,
        dead_at=INT64,
    )


def registrations() -> st.SearchStrategy[AgentRegistration]:
    return st.builds(
        AgentRegistration,
        agent_id=NAMES,
        partition=INT32,
        epoch=INT64,
        start_offset=INT64,
        status=st.sampled_from(RegistrationStatus),
        registered_at=INT64,
        renewed_at=INT64,
        capacity=INT32,
        skills=SKILLS,
        zone=st.none() | NAMES,
    )


def task_events() -> st.SearchStrategy[TaskEvent]:
    return st.builds(
        TaskEvent,
        task_id=SHORT_TEXT,
        type=NAMES,
        kind=st.sampled_from(TaskEventKind),
        at=INT64,
        attempt=INT32,
        priority=INT32,
        tenant=NAMES,
        agent_id=st.none() | NAMES,
        status=st.none() | st.sampled_from(TaskStatus),
        reason=st.none() | SHORT_TEXT,
        error=st.none() | SHORT_TEXT,
        due_at=st.none() | INT64,
    )


def dispatcher_statuses() -> st.SearchStrategy[DispatcherStatus]:
    return st.builds(
        DispatcherStatus,
        instance=NAMES,
        state=NAMES,
        shards=st.lists(INT32, max_size=8).map(tuple),
        tasks=INT64,
        dispatched=INT64,
        completed=INT64,
        dead_lettered=INT64,
        held=INT32,
        in_flight=INT32,
        sent_at=INT64,
    )


def task_outcomes() -> st.SearchStrategy[TaskOutcome]:
    return st.builds(
        TaskOutcome,
        task_id=SHORT_TEXT,
        type=NAMES,
        status=st.sampled_from(OutcomeStatus),
        output=st.none() | st.binary(max_size=64),
        error=st.none() | SHORT_TEXT,
        dead_letter_reason=st.none() | st.sampled_from(DeadLetterReason),
        attempts=INT32,
        agent_id=st.none() | NAMES,
        submitted_at=INT64,
        started_at=st.none() | INT64,
        finished_at=st.none() | INT64,
        ended_at=INT64,
        source_key=st.none() | SHORT_TEXT,
    )


RECORD_STRATEGIES: dict[type[WireRecord], st.SearchStrategy[WireRecord]] = {
    Task: tasks(),
    Assignment: assignments(),
    TaskResult: task_results(),
    AgentHeartbeat: heartbeats(),
    DeadLetter: dead_letters(),
    AgentRegistration: registrations(),
    TaskEvent: task_events(),
    DispatcherStatus: dispatcher_statuses(),
    TaskOutcome: task_outcomes(),
    CancelRequest: st.builds(
        CancelRequest, task_id=SHORT_TEXT, requested_at=INT64, reason=st.none() | SHORT_TEXT
    ),
}
"""A strategy per record type, covering every record type of the wire format."""

ANY_RECORD: st.SearchStrategy[WireRecord] = st.one_of(*RECORD_STRATEGIES.values())
