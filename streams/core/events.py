"""What the distributor is told: the events its driver (the dispatcher, the simulator) feeds in.

A driver hands :meth:`Distributor.handle` every event it has at one moment, in the order they
happened, with the time ``now_ms``; the distributor applies them all, lets time pass to
``now_ms`` (expiries, silent agents, leases, due retries) and then releases waiting tasks to free
slots once. Giving many events at once is cheaper than one at a time (one release pass for
all), and gives the same answer as giving them one by one at the same ``now_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.actions import ResultStatus
from streams.core.agents import Heartbeat
from streams.core.model import Job


@dataclass(frozen=True, slots=True)
class TaskArrived:
    """A task read from a task topic, or back from a retry tier (``job.attempt`` counted).

    ``due_ms``: a retry read before it is due waits until then (None: due now).
    """

    job: Job
    due_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """The agent started running attempt ``attempt`` at ``at_ms`` (queue time ends there)."""

    task_id: str
    agent_id: str
    attempt: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class ResultReported:
    """An agent's result for attempt ``attempt`` of a task."""

    task_id: str
    agent_id: str
    attempt: int
    status: ResultStatus
    error: str | None = None
    no_handler: bool = False
    """A REJECTED because the agent has no handler for the task's type: that agent is sent no
    more of the type (until it restarts), and the task goes back without spending an attempt."""
    preempted: bool = False
    """A CANCELLED because the dispatcher stopped the run to free its slot (``StopRun`` with
    ``preempted``): the task goes back without spending an attempt, even when the core that
    asked is not the one that reads the result (a restart in between)."""


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    """An agent's heartbeat, received at the ``now_ms`` it is handled with."""

    heartbeat: Heartbeat


@dataclass(frozen=True, slots=True)
class SlotsResized:
    """The slots the driver may fill at an agent changed without a heartbeat (its dispatcher
    instance gained or lost shards: ``shares.py``). Tasks already there stay; an agent holding
    more than its new slots is sent nothing until it is below them."""

    agent_id: str
    capacity: int


@dataclass(frozen=True, slots=True)
class AgentLeft:
    """The agent left on purpose, or lost its claim: what it held goes back to the queue."""

    agent_id: str


@dataclass(frozen=True, slots=True)
class InFlightRecovered:
    """After a restart: ``job`` was running on ``agent_id`` (that incarnation) under a lease.

    It counts as in flight again once the agent heartbeats as the same incarnation; it goes back
    to the queue (attempt counted) if the agent comes back as another incarnation, or is not
    heard from within the health config's ``down_after_ms``.
    """

    job: Job
    agent_id: str
    incarnation: int
    dispatched_ms: int
    lease_ms: int


@dataclass(frozen=True, slots=True)
class EndedRecovered:
    """After a restart: a task with this dedupe key (``Job.dedupe_key``) had ended."""

    dedupe_key: str


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """These tasks are now another driver's (their shard moved to another dispatcher instance):
    forget them, their slots included, without ending them."""

    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """Someone asked for the task ``task_id`` to be cancelled: dropped if it waits, stopped if
    it runs; remembered for a while if it has not arrived yet."""

    task_id: str


Event = (
    TaskArrived
    | TaskStarted
    | ResultReported
    | HeartbeatReceived
    | SlotsResized
    | AgentLeft
    | InFlightRecovered
    | EndedRecovered
    | Withdrawn
    | CancelRequested
)
