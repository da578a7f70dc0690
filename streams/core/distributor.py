"""The distributor: scheduler, router, agent registry, leases and statistics composed as one.

Theory of operation. Events go in (a task arrived, a heartbeat, a result, a tick at ``now_ms``);
decisions come out as :mod:`streams.core.actions`. The Faust dispatcher and the simulator drive
this very class, so what the simulator proves is what production runs.

Invariants:
- A task is dispatched only by the scheduler's release, through the router, to an agent the
  router found eligible; with late binding that agent had a free slot.
- Every task is in exactly one place: held by the scheduler, in flight (a lease), waiting for
  its retry (with the driver), or ended (completed or dead-lettered, remembered in a bounded
  window so that a duplicate delivery is dropped).
- An attempt is counted each time a task leaves an agent without success: a retryable failure,
  a lost agent, a lease that ran out, a rejection. When the attempts are spent it is
  dead-lettered; it is never dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from streams.core.actions import (
    Action,
    Completed,
    DeadLetter,
    Dispatch,
    PauseIntake,
    Requeued,
    ResultStatus,
    ResumeIntake,
    Retry,
)
from streams.core.agents import AgentRegistry, HealthConfig, Heartbeat
from streams.core.leases import InFlight, Lease
from streams.core.model import AgentState, DeadLetterReason, Job
from streams.core.placer import RoutingPlacer
from streams.core.routing import Router, RoutingConfig
from streams.core.scheduling import OfferResult, Scheduler, SchedulerConfig
from streams.core.stats import Statistics
from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DistributorConfig:
    """Everything the core needs; built from the settings at the entry point."""

    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    lease_ms: int = 300_000
    """How long an agent may hold a task before it is taken back (failover)."""
    retry_backoffs_ms: tuple[int, ...] = (1_000, 10_000, 60_000)
    """Backoff of each retry tier; attempt n waits in tier min(n, last)."""
    dedupe_window: int = 100_000
    """How many ended task ids are remembered to drop duplicate deliveries."""

    def __post_init__(self) -> None:
        if self.lease_ms <= 0:
            raise ConfigError(f"lease_ms must be > 0 (got {self.lease_ms})")
        if not self.retry_backoffs_ms or any(b <= 0 for b in self.retry_backoffs_ms):
            raise ConfigError("retry_backoffs_ms needs at least one tier, every backoff > 0 ms")
        if self.dedupe_window < 0:
            raise ConfigError(f"dedupe_window must be >= 0 (got {self.dedupe_window})")


class Distributor:
    """The whole distribution logic behind one event interface (see the module docstring)."""

    def __init__(self, config: DistributorConfig, stats: Statistics | None = None) -> None:
        self.config = config
        self.stats = stats if stats is not None else Statistics(config.scheduler.levels)
        self.registry = AgentRegistry(config.health)
        self.in_flight = InFlight(self.registry)
        self.scheduler = Scheduler(config.scheduler)
        self.router = Router(config.routing)
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._started_ms: dict[str, int] = {}
        self._paused = False
        self._reported_capacity: dict[str, int] = {}
        self._retrying: dict[str, int] = {}  # task id -> the attempt its retry will bring

    # --- events ------------------------------------------------------------------------------

    def task_arrived(self, job: Job, now_ms: int) -> list[Action]:
        """A task read from a task topic or a retry tier; duplicates are dropped."""
        if self.is_duplicate(job):
            return []
        self._retrying.pop(job.task_id, None)
        if job.attempt == 0:
            self.stats.task_received(job, now_ms)
        outcome = self.scheduler.offer(job, now_ms)
        if outcome is OfferResult.EXPIRED:
            return [
                self._dead_letter(job, DeadLetterReason.EXPIRED, "expired before dispatch", now_ms)
            ]
        if outcome is OfferResult.DUPLICATE:
            return []
        return self._release(now_ms)

    def is_duplicate(self, job: Job) -> bool:
        """Whether ``task_arrived`` would drop ``job``: it ended (same replay), is held or in
        flight, or is an older delivery of a task now waiting for its retry."""
        if job.dedupe_key in self._ended or self.in_flight.get(job.task_id) is not None:
            return True
        if self.scheduler.holds(job.task_id):
            return True
        awaited = self._retrying.get(job.task_id)
        return awaited is not None and job.attempt < awaited

    def restore_ended(self, dedupe_key: str) -> None:
        """Recovery: remember a task that ended before a restart (its ``Job.dedupe_key``)."""
        self._remember_ended(dedupe_key)

    def heartbeat(self, hb: Heartbeat, now_ms: int) -> list[Action]:
        """An agent's heartbeat: registers it, updates it, may free or take capacity."""
        actions: list[Action] = []
        for transition in self.registry.heartbeat(hb, now_ms):
            actions += self._on_transition(transition.agent_id, transition.after, now_ms)
        self._report_capacity(hb.agent_id, now_ms)
        return actions + self._release(now_ms)

    def agent_left(self, agent_id: str, now_ms: int) -> list[Action]:
        """An agent said goodbye: its tasks go back to the queue."""
        actions: list[Action] = []
        for transition in self.registry.leave(agent_id, now_ms):
            actions += self._on_transition(transition.agent_id, transition.after, now_ms)
        return actions + self._release(now_ms)

    def task_started(self, task_id: str, agent_id: str, attempt: int, now_ms: int) -> None:
        """The agent started the run (queue time ends here)."""
        lease = self.in_flight.get(task_id)
        if lease is None or lease.attempt != attempt or lease.agent_id != agent_id:
            return
        self._started_ms[task_id] = now_ms
        self.stats.task_started(lease.job, agent_id, now_ms)

    def result(
        self,
        task_id: str,
        agent_id: str,
        attempt: int,
        status: ResultStatus,
        now_ms: int,
        error: str | None = None,
    ) -> list[Action]:
        """An agent's result: frees the slot; retries, dead-letters or completes the task."""
        lease = self.in_flight.get(task_id)
        if lease is None or lease.attempt != attempt or lease.agent_id != agent_id:
            return []  # stale: the task was failed over and runs elsewhere
        self.in_flight.finish(task_id, attempt)
        self.scheduler.task_finished(lease.job)
        started_ms = self._started_ms.pop(task_id, None)
        if started_ms is None:
            self.stats.task_started(lease.job, agent_id, now_ms)
            started_ms = lease.dispatched_ms
        succeeded = status is ResultStatus.SUCCEEDED
        self.registry.record_result(agent_id, max(0, now_ms - started_ms), succeeded)
        self.stats.task_finished(lease.job, agent_id, now_ms, status.value)
        return [*self._settle(lease, status, now_ms, error), *self._release(now_ms)]

    def tick(self, now_ms: int) -> list[Action]:
        """Time passes: expire tasks, time out silent agents and leases, release."""
        actions: list[Action] = []
        for removed in self.scheduler.expire(now_ms):
            actions.append(
                self._dead_letter(removed.job, removed.reason, _why(removed.reason), now_ms)
            )
        for transition in self.registry.tick(now_ms):
            actions += self._on_transition(transition.agent_id, transition.after, now_ms)
        for lease in self.in_flight.expired(now_ms):
            actions += self._take_back(lease, "lease expired", now_ms)
        return actions + self._release(now_ms)

    def next_wakeup_ms(self, now_ms: int) -> int | None:
        """The earliest time at which ``tick`` would change something by itself."""
        times = [
            self.scheduler.next_wakeup_ms(now_ms),
            self.registry.next_wakeup_ms(now_ms),
            self.in_flight.next_expiry_ms(),
        ]
        pending = [t for t in times if t is not None]
        return min(pending) if pending else None

    def late_binding(self, job: Job) -> bool:
        """False when the job's strategy is a push baseline (the agent queues it locally)."""
        return self.router.late_binding(job)

    @property
    def held(self) -> int:
        return self.scheduler.held

    # --- internals ---------------------------------------------------------------------------

    def _release(self, now_ms: int) -> list[Action]:
        if self.scheduler.held == 0:
            return self._intake_signal()  # nothing waits: skip building a placer
        placer = RoutingPlacer(
            self.router, self.registry, self.in_flight, self.config.lease_ms, now_ms
        )
        actions: list[Action] = []
        for released in self.scheduler.release(now_ms, placer):
            lease = self.in_flight.get(released.job.task_id)
            assert lease is not None  # the placer took the lease
            agent = self.registry.get(released.agent_id)
            inversion = (
                agent is not None
                and self.scheduler.held > 0
                and self.scheduler.has_waiting(released.effective_priority, agent.can_run)
            )
            self.stats.task_dispatched(
                released.job,
                released.agent_id,
                now_ms,
                inversion=inversion,
                affinity_hit=placer.affinity_hits.get(released.job.task_id),
            )
            actions.append(
                Dispatch(released.job, released.agent_id, lease.epoch, self.config.lease_ms, now_ms)
            )
        return actions + self._intake_signal()

    def _intake_signal(self) -> list[Action]:
        paused = self.scheduler.paused
        if paused == self._paused:
            return []
        self._paused = paused
        return [PauseIntake() if paused else ResumeIntake()]

    def _settle(
        self, lease: Lease, status: ResultStatus, now_ms: int, error: str | None
    ) -> list[Action]:
        job = lease.job
        if status in (ResultStatus.SUCCEEDED, ResultStatus.CANCELLED):
            self._remember_ended(job.dedupe_key)
            return [Completed(job, lease.agent_id, status)]
        if status is ResultStatus.FAILED:
            return [self._dead_letter(job, DeadLetterReason.FAILED, error or "failed", now_ms)]
        if status is ResultStatus.REJECTED:
            return self._take_back(lease, error or "rejected by the agent", now_ms)
        return [self._retry(job, error, now_ms)]

    def _retry(self, job: Job, error: str | None, now_ms: int) -> Action:
        if job.attempt + 1 >= job.max_attempts:
            reason = DeadLetterReason.MAX_ATTEMPTS
            return self._dead_letter(job, reason, error or "attempts spent", now_ms)
        tier = min(job.attempt, len(self.config.retry_backoffs_ms) - 1)
        due_ms = now_ms + self.config.retry_backoffs_ms[tier]
        self._retrying[job.task_id] = job.attempt + 1
        return Retry(replace(job, attempt=job.attempt + 1), tier, due_ms, error)

    def _on_transition(self, agent_id: str, after: AgentState, now_ms: int) -> list[Action]:
        self._report_capacity(agent_id, now_ms)
        if after is not AgentState.DOWN:
            return []
        self.router.forget(agent_id)
        actions: list[Action] = []
        for lease in self.in_flight.lost_with(agent_id):
            actions += self._take_back(lease, f"agent {agent_id} is down", now_ms)
        return actions

    def _take_back(self, lease: Lease, cause: str, now_ms: int) -> list[Action]:
        """Failover: the run is lost; count the attempt and queue the task again."""
        job = lease.job
        self.scheduler.task_finished(job)
        self._started_ms.pop(job.task_id, None)
        self.stats.task_finished(job, lease.agent_id, now_ms, "LOST")
        if job.attempt + 1 >= job.max_attempts:
            return [self._dead_letter(job, DeadLetterReason.MAX_ATTEMPTS, cause, now_ms)]
        again = replace(job, attempt=job.attempt + 1)
        if self.scheduler.offer(again, now_ms) is OfferResult.EXPIRED:
            return [self._dead_letter(again, DeadLetterReason.EXPIRED, cause, now_ms)]
        return [Requeued(again, lease.agent_id, cause)]

    def _dead_letter(
        self, job: Job, reason: DeadLetterReason, error: str, now_ms: int
    ) -> DeadLetter:
        self._remember_ended(job.dedupe_key)
        self.stats.task_dead_lettered(job, reason, now_ms)
        return DeadLetter(job, reason, error, job.attempt + 1)

    def _remember_ended(self, key: str) -> None:
        if self.config.dedupe_window == 0:
            return
        self._ended[key] = None
        self._ended.move_to_end(key)
        if len(self._ended) > self.config.dedupe_window:
            self._ended.popitem(last=False)

    def _report_capacity(self, agent_id: str, now_ms: int) -> None:
        """Tell the statistics an agent's usable capacity whenever it changes."""
        capacity = self._capacity_of(agent_id)
        if self._reported_capacity.get(agent_id) != capacity:
            self._reported_capacity[agent_id] = capacity
            self.stats.agent_capacity(agent_id, capacity, now_ms)

    def _capacity_of(self, agent_id: str) -> int:
        agent = self.registry.get(agent_id)
        return agent.capacity if agent is not None and agent.state is AgentState.READY else 0


def _why(reason: DeadLetterReason) -> str:
    if reason is DeadLetterReason.NO_CAPABLE_AGENT:
        return "no agent can run this task (skills, zone or target)"
    return "deadline or TTL passed before dispatch"
