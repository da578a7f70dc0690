"""The wire records as typed Python values: one frozen dataclass per Avro record.

Python field names are the Avro field names (a test keeps them from drifting apart), times are
integer milliseconds since the Unix epoch, and every record converts itself to and from the
plain dict fastavro reads and writes (``to_avro`` / ``from_avro``).

Sequences are tuples so records stay immutable and hashable: ``Task.required_skills`` keeps its
order; ``Task.headers`` is a tuple of ``(key, value)`` pairs, kept sorted by key, with unique keys
(the Avro map it becomes cannot hold a key twice).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import sys
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol, Self, TypedDict, TypeVar, Unpack

from streams.core.model import ORDERING_KEY_HEADER, DeadLetterReason
from streams.errors import EncodeError

AvroDatum = dict[str, Any]
"""A record as fastavro reads and writes it: field name to plain value."""


class WireRecord(Protocol):
    """What the codecs need of a record type: its Avro name and the dict conversions."""

    SCHEMA_NAME: ClassVar[str]
    """Full Avro name of the record's schema, e.g. ``taskd.Task``."""

    def to_avro(self) -> AvroDatum:
        """The record as fastavro writes it (enums as symbols, tuples as lists or maps)."""
        ...

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        """The record from what fastavro read with the current schema."""
        ...


NO_HANDLER = "no handler for type "
"""How a REJECTED result's ``error`` starts when the agent has no handler for the task's type
(then the type follows): the dispatcher sends that agent no more of the type."""


STOP_HEADER = "taskd-stop"
"""On a record of an agent's ``dispatch`` partition: its assignments are runs to stop (their
tasks were cancelled), not runs to start. An agent that does not know the header skips them as
attempts it has seen."""
STOP_PREEMPT = "preempt"
"""The value of ``STOP_HEADER`` when the runs are stopped to free their slots for more urgent
tasks (preemption), not cancelled: they will run again, with the same attempt."""
PREEMPTED = "preempted"
"""The error of a CANCELLED result whose run was stopped by a ``STOP_PREEMPT`` record: the
dispatcher queues its task again without spending an attempt."""
GROUPED_HEADER = "taskd-grouped"
"""On a record of an agent's ``dispatch`` partition: the task types (comma-separated) whose
assignments in it are a group the dispatcher gathered for the agent's batch handler. It waited
for them already, so the agent hands them to the handler at once rather than wait again."""
REPLY_PARTITION_HEADER = "taskd-reply-partition"
"""A task header naming the partition of the replies topic (``<prefix>replies``) its outcome is
written to when it ends; tasks without it get no outcome record."""


SOURCE_KEY_HEADER = "taskd-key"
"""A task header the dispatcher sets on a JSON task sent without a ``task_id``: the Kafka key
it was sent with, echoed on its outcome (``TaskOutcome.source_key``)."""


def header(headers: tuple[tuple[str, str], ...], key: str) -> str | None:
    """The value of ``key`` among a task's headers, None if absent."""
    for name, value in headers:
        if name == key:
            return value
    return None


def outcome_partition(headers: tuple[tuple[str, str], ...]) -> int | None:
    """The replies partition a task's headers ask for its outcome on (None: none, or not a
    partition number)."""
    value = header(headers, REPLY_PARTITION_HEADER)
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


class TaskStatus(enum.Enum):
    """How one attempt of a task ended (``TaskResult.status``)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    """Final failure: the task goes to the dead letters."""
    RETRYABLE = "RETRYABLE"
    """Transient failure: the task is retried while attempts remain."""
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    """The agent refused the task (unknown type, shutting down, stale epoch)."""


class AgentStatus(enum.Enum):
    """What an agent says of itself in its heartbeat."""

    READY = "READY"
    DRAINING = "DRAINING"
    """Finishing its in-flight tasks and taking no new ones."""
    STOPPING = "STOPPING"


class RegistrationStatus(enum.Enum):
    """Whether an agent's registration still claims its dispatch partition."""

    ACTIVE = "ACTIVE"
    """Claimed, while renewed within the registration TTL."""
    RELEASED = "RELEASED"
    """Given up on a clean stop: free for anyone, re-claimed first by the same agent."""


class TaskEventKind(enum.Enum):
    """A step in the life of a task (``TaskEvent.kind``), in the order they usually come."""

    RECEIVED = "RECEIVED"
    """Read from a task topic (not again when it comes back from a retry tier)."""
    DISPATCHED = "DISPATCHED"
    STARTED = "STARTED"
    """The agent started the run (reported with its result: see :class:`TaskEvent`)."""
    COMPLETED = "COMPLETED"
    """The run ended SUCCEEDED or CANCELLED."""
    FAILED = "FAILED"
    """The run ended FAILED, RETRYABLE or REJECTED (``status`` says which)."""
    RETRIED = "RETRIED"
    """Sent to a retry tier with the next attempt."""
    REQUEUED = "REQUEUED"
    """Taken back from its agent (down, lease run out, rejected) and queued again."""
    EXPIRED = "EXPIRED"
    """Its deadline or TTL passed before dispatch (a DEAD_LETTERED event follows)."""
    DEAD_LETTERED = "DEAD_LETTERED"


class TaskOptions(TypedDict, total=False):
    """The optional fields of a :class:`Task`, for :meth:`Task.new`."""

    tenant: str
    affinity_key: str | None
    required_skills: tuple[str, ...]
    zone: str | None
    target_agent: str | None
    deadline: int | None
    ttl_ms: int | None
    max_attempts: int
    attempt: int
    cost: float | None
    headers: tuple[tuple[str, str], ...]
    ordering_key: str | None
    """Tasks sharing it run one at a time, in order (carried as the ``taskd-ordering-key``
    header; the client makes it the Kafka key, so they share a partition)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """A unit of work, as producers submit it and agents receive it inside an Assignment."""

    SCHEMA_NAME: ClassVar[str] = "taskd.Task"

    task_id: str
    type: str
    priority: int
    """Level ``0 .. levels-1``; 0 is the most urgent."""
    payload: bytes
    tenant: str = "default"
    affinity_key: str | None = None
    required_skills: tuple[str, ...] = ()
    zone: str | None = None
    target_agent: str | None = None
    submitted_at: int
    """Milliseconds since the epoch."""
    deadline: int | None = None
    """Absolute time (ms since the epoch) by which it must have started."""
    ttl_ms: int | None = None
    """Time to live after ``submitted_at``."""
    max_attempts: int = 3
    attempt: int = 0
    cost: float | None = None
    """Expected work units; ``None`` means 1."""
    headers: tuple[tuple[str, str], ...] = ()
    """``(key, value)`` pairs, sorted by key, keys unique (normalised on construction)."""

    def __post_init__(self) -> None:
        if self.required_skills:
            object.__setattr__(self, "required_skills", _interned_all(self.required_skills))
        elif type(self.required_skills) is not tuple:
            object.__setattr__(self, "required_skills", ())
        if self.headers:
            object.__setattr__(self, "headers", sorted_headers(self.headers))
        elif type(self.headers) is not tuple:
            object.__setattr__(self, "headers", ())
        for name in _TASK_FEW_VALUES:
            value = getattr(self, name)
            if type(value) is str:
                object.__setattr__(self, name, sys.intern(value))

    @classmethod
    def new(
        cls,
        *,
        type: str,
        priority: int,
        now_ms: int,
        payload: bytes = b"",
        **options: Unpack[TaskOptions],
    ) -> Task:
        """A fresh task: a new uuid4-hex ``task_id``, submitted at ``now_ms``."""
        fields: dict[str, Any] = dict(options)
        ordering_key = fields.pop("ordering_key", None)
        if ordering_key is not None:
            headers: Any = fields.get("headers", ())
            fields["headers"] = (*headers, (ORDERING_KEY_HEADER, ordering_key))
        return cls(
            task_id=uuid.uuid4().hex,
            type=type,
            priority=priority,
            payload=payload,
            submitted_at=now_ms,
            **fields,
        )

    @property
    def ordering_key(self) -> str | None:
        """The task's ordering key (its ``taskd-ordering-key`` header), if any."""
        for name, value in self.headers:
            if name == ORDERING_KEY_HEADER:
                return value
        return None

    @property
    def kafka_key(self) -> str:
        """The key producers give its record: the ordering key, else the affinity key, else
        the id (a key's tasks then share a partition, hence a dispatcher shard, in order)."""
        ordering_key = self.ordering_key
        if ordering_key is not None:
            return ordering_key
        return self.affinity_key if self.affinity_key is not None else self.task_id

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["headers"] = dict(self.headers)
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**{**datum, "headers": tuple(datum["headers"].items())})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """A task given to one agent; written to that agent's partition of the dispatch topic."""

    SCHEMA_NAME: ClassVar[str] = "taskd.Assignment"

    task: Task
    agent_id: str
    epoch: int
    """Epoch of the partition owner: agents skip assignments of older epochs."""
    dispatched_at: int
    lease_ms: int
    dispatcher_shard: int
    reply_partition: int
    """Partition of the results topic the agent answers on (the owning shard's)."""

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["task"] = self.task.to_avro()
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**{**datum, "task": Task.from_avro(datum["task"])})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """How one attempt of a task ended, reported by the agent that ran it."""

    SCHEMA_NAME: ClassVar[str] = "taskd.TaskResult"

    task_id: str
    agent_id: str
    attempt: int
    status: TaskStatus
    error: str | None = None
    started_at: int
    finished_at: int
    output: bytes | None = None
    shard: int | None = None
    """The dispatcher shard that owns the task (``Assignment.dispatcher_shard``)."""

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["status"] = self.status.value
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**{**datum, "status": _by_value(TaskStatus, datum["status"])})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentHeartbeat:
    """An agent's periodic report of its capacity, skills and load."""

    SCHEMA_NAME: ClassVar[str] = "taskd.AgentHeartbeat"

    agent_id: str
    capacity: int
    """Slots: how many tasks it runs at once."""
    skills: tuple[str, ...]
    zone: str | None = None
    weight: float = 1.0
    cost_per_task: float = 0.0
    status: AgentStatus
    in_flight: int
    completed: int
    sent_at: int
    task_types: tuple[str, ...] | None = None
    """The task types it has a handler for; None: every type."""
    batch_max_size: tuple[tuple[str, int], ...] = ()
    """(task type, most tasks one call takes) of each batch handler, sorted by type."""
    batch_max_wait_ms: tuple[tuple[str, int], ...] = ()
    """(task type, how long its batcher waits for more) of each batch handler."""
    prefetch: int | None = None
    """Assignments it reads ahead beyond its slots; None: not said (an older agent)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", tuple(self.skills))
        if self.task_types is not None:
            object.__setattr__(self, "task_types", tuple(self.task_types))
        for name in ("batch_max_size", "batch_max_wait_ms"):
            object.__setattr__(self, name, tuple(sorted(dict(getattr(self, name)).items())))

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["status"] = self.status.value
        if self.task_types is not None:  # fastavro reads a tuple in a union as (branch, value)
            datum["task_types"] = list(self.task_types)
        datum["batch_max_size"] = dict(self.batch_max_size)
        datum["batch_max_wait_ms"] = dict(self.batch_max_wait_ms)
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**{**datum, "status": _by_value(AgentStatus, datum["status"])})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DispatcherStatus:
    """A dispatcher instance's periodic report to the others of its group."""

    SCHEMA_NAME: ClassVar[str] = "taskd.DispatcherStatus"

    instance: str
    """host:pid of the instance."""
    state: str
    """starting, distributing, idle, draining or stopped (its last report)."""
    shards: tuple[int, ...]
    tasks: int
    dispatched: int
    completed: int
    dead_lettered: int
    held: int
    in_flight: int
    sent_at: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "shards", tuple(self.shards))

    def to_avro(self) -> AvroDatum:
        return _shallow_dict(self)

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**datum)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A task that will not be run, and why; ``raw`` keeps the bytes that could not be decoded."""

    SCHEMA_NAME: ClassVar[str] = "taskd.DeadLetter"

    task: Task | None = None
    raw: bytes | None = None
    reason: DeadLetterReason
    error: str
    attempts: int
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    dead_at: int

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["task"] = None if self.task is None else self.task.to_avro()
        datum["reason"] = self.reason.value
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        task = None if datum["task"] is None else Task.from_avro(datum["task"])
        return cls(**{**datum, "task": task, "reason": DeadLetterReason(datum["reason"])})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentRegistration:
    """An agent's claim of one dispatch partition, in the compacted registry topic.

    The registry's single partition orders every claim, so the last record per agent id and
    the highest epoch per partition decide who owns what (see docs/protocol.md).
    """

    SCHEMA_NAME: ClassVar[str] = "taskd.AgentRegistration"

    agent_id: str
    partition: int
    """The partition of the dispatch topic the agent reads."""
    epoch: int
    """1 + the highest epoch ever recorded for the partition; its assignments carry it."""
    start_offset: int
    """End offset of the dispatch partition when claimed: the agent reads from here."""
    status: RegistrationStatus
    registered_at: int
    """Milliseconds since the epoch."""
    renewed_at: int
    """Milliseconds since the epoch; a claim older than the registration TTL holds nothing."""
    capacity: int
    skills: tuple[str, ...] = ()
    zone: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", tuple(self.skills))

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["status"] = self.status.value
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**{**datum, "status": RegistrationStatus(datum["status"])})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent:
    """The life of a task, on the ``events`` topic (audit, result tracking).

    With events on (``taskd dispatcher --events``), the dispatcher writes one per task, best
    effort, keyed by task id, when the task ends: COMPLETED (with the agent and its status) or
    DEAD_LETTERED (with the reason and the error), with the times it was submitted and started.
    The other kinds are kept for readers of older records.
    """

    SCHEMA_NAME: ClassVar[str] = "taskd.TaskEvent"

    task_id: str
    type: str
    kind: TaskEventKind
    at: int
    """Milliseconds since the epoch; STARTED, COMPLETED and FAILED carry the agent's times."""
    attempt: int
    priority: int
    tenant: str = "default"
    agent_id: str | None = None
    status: TaskStatus | None = None
    """The agent's result status (STARTED, COMPLETED, FAILED)."""
    reason: str | None = None
    """The dead-letter reason code, or why the task was requeued."""
    error: str | None = None
    due_at: int | None = None
    """RETRIED: when the retry is due."""
    submitted_at: int | None = None
    """When the producer submitted the task."""
    started_at: int | None = None
    """When the agent started the last attempt (None: it never started)."""

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["kind"] = self.kind.value
        datum["status"] = None if self.status is None else self.status.value
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        status = None if datum["status"] is None else _by_value(TaskStatus, datum["status"])
        kind = _by_value(TaskEventKind, datum["kind"])
        return cls(**{**datum, "kind": kind, "status": status})


class OutcomeStatus(enum.Enum):
    """How a task ended, for whoever waits for it (``TaskOutcome.status``)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    """It is in the dead letters: ``dead_letter_reason`` says why."""
    CANCELLED = "CANCELLED"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    """How a task ended, written once it ends to the replies partition the task named.

    The dispatcher writes one per task that carries the REPLY_PARTITION_HEADER (clients set it
    when they wait for results); a crash may write it twice, so readers take the first.
    """

    SCHEMA_NAME: ClassVar[str] = "taskd.TaskOutcome"

    task_id: str
    type: str
    status: OutcomeStatus
    output: bytes | None = None
    """What the handler returned (SUCCEEDED)."""
    error: str | None = None
    dead_letter_reason: DeadLetterReason | None = None
    """Why it is in the dead letters (FAILED)."""
    attempts: int
    """Attempts counted, the last one included, as the dead letter counts them (a task that
    expired before its first run counts 1; ``started_at`` says whether it ran)."""
    agent_id: str | None = None
    submitted_at: int
    started_at: int | None = None
    finished_at: int | None = None
    ended_at: int
    """When the dispatcher settled it (ms since the epoch)."""
    source_key: str | None = None
    """The Kafka key it was submitted with, when the dispatcher kept it (JSON tasks)."""

    @property
    def succeeded(self) -> bool:
        return self.status is OutcomeStatus.SUCCEEDED

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["status"] = self.status.value
        reason = self.dead_letter_reason
        datum["dead_letter_reason"] = None if reason is None else reason.value
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        reason = datum["dead_letter_reason"]
        return cls(
            **{
                **datum,
                "status": _by_value(OutcomeStatus, datum["status"]),
                "dead_letter_reason": None if reason is None else DeadLetterReason(reason),
            }
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AssignmentBatch:
    """The assignments given to one agent at once: one record of its dispatch partition."""

    SCHEMA_NAME: ClassVar[str] = "taskd.AssignmentBatch"

    assignments: tuple[Assignment, ...]

    def to_avro(self) -> AvroDatum:
        return {"assignments": [assignment.to_avro() for assignment in self.assignments]}

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(assignments=tuple(Assignment.from_avro(item) for item in datum["assignments"]))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResultBatch:
    """The results an agent reports at once: one record of the results topic."""

    SCHEMA_NAME: ClassVar[str] = "taskd.ResultBatch"

    results: tuple[TaskResult, ...]

    def to_avro(self) -> AvroDatum:
        return {"results": [result.to_avro() for result in self.results]}

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(results=tuple(TaskResult.from_avro(item) for item in datum["results"]))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    """The dispatcher's durable record of a task it took off its input and has not finished:
    running on ``agent_id``, or (``agent_id`` None) waiting again for a slot."""

    SCHEMA_NAME: ClassVar[str] = "taskd.TaskState"

    task: Task
    shard: int
    agent_id: str | None = None
    epoch: int = 0
    dispatched_at: int = 0
    lease_ms: int = 0
    preempted: int = 0

    def to_avro(self) -> AvroDatum:
        datum = _shallow_dict(self)
        datum["task"] = self.task.to_avro()
        return datum

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**{**datum, "task": Task.from_avro(datum["task"])})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndedTasks:
    """The dedupe keys of tasks a dispatcher finished in one checkpoint of one shard."""

    SCHEMA_NAME: ClassVar[str] = "taskd.EndedTasks"

    keys: tuple[str, ...]
    ended_at: int

    def to_avro(self) -> AvroDatum:
        return {"keys": list(self.keys), "ended_at": self.ended_at}

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(keys=tuple(datum["keys"]), ended_at=datum["ended_at"])


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequest:
    """A request to cancel the task ``task_id`` (``taskd cancel``, ``TaskClient.cancel``),
    written to every partition of the ``cancels`` topic: whichever shard owns the task acts."""

    SCHEMA_NAME: ClassVar[str] = "taskd.CancelRequest"

    task_id: str
    requested_at: int
    reason: str | None = None

    def to_avro(self) -> AvroDatum:
        return _shallow_dict(self)

    @classmethod
    def from_avro(cls, datum: AvroDatum) -> Self:
        return cls(**datum)


RECORD_TYPES: tuple[type[WireRecord], ...] = (
    Task,
    Assignment,
    TaskResult,
    AgentHeartbeat,
    DeadLetter,
    AgentRegistration,
    TaskEvent,
    AssignmentBatch,
    ResultBatch,
    TaskState,
    EndedTasks,
    DispatcherStatus,
    TaskOutcome,
    CancelRequest,
)
"""Every wire record type, Task first (the others nest it)."""


_TASK_FEW_VALUES = ("type", "tenant", "zone", "target_agent")
"""Task fields that take few distinct values: interned, so that the many tasks a dispatcher
holds share one string each (decoding makes a new one per record) instead of a copy each."""


def _interned_all(values: Iterable[Any]) -> tuple[Any, ...]:
    """``tuple(values)``, its strings interned (skills are few and repeat)."""
    return tuple(sys.intern(value) if type(value) is str else value for value in values)


def sorted_headers(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Header pairs sorted by key; a key given twice raises EncodeError (an Avro map can't)."""
    ordered = tuple(sorted(pairs))
    for (key, _), (next_key, _) in itertools.pairwise(ordered):
        if key == next_key:
            raise EncodeError(f"headers: key {key!r} given twice")
    return ordered


E = TypeVar("E", bound=enum.Enum)


def _by_value(enum_type: type[E], value: Any) -> E:
    """``enum_type(value)`` without the slow path of ``EnumMeta.__call__`` (records decode
    thousands of these a second); ValueError for an unknown value, as the call would."""
    member = enum_type._value2member_map_.get(value)
    if member is None:
        return enum_type(value)
    return member  # type: ignore[return-value]


def _shallow_dict(record: Any) -> AvroDatum:
    return {name: getattr(record, name) for name in _field_names(type(record))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(record_type: type) -> tuple[str, ...]:
    """A record type's field names (``dataclasses.fields`` rebuilds its tuple every call)."""
    names = _FIELD_NAMES.get(record_type)
    if names is None:
        names = _FIELD_NAMES[record_type] = tuple(f.name for f in dataclasses.fields(record_type))
    return names
