"""The dispatcher's own knobs (timings, bounds), next to the shared :class:`Settings`.

The settings hold what every component shares (broker, topics, shards); these are the
dispatcher's: how long an agent may stay silent, how long a lease lasts, how much it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.agents import HealthConfig
from streams.core.distributor import DistributorConfig
from streams.core.routing import RoutingConfig
from streams.core.routing.names import AFFINITY, check_strategy_name
from streams.core.scheduling import SchedulerConfig
from streams.errors import ConfigError
from streams.settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatcherConfig:
    """Timings in milliseconds; ``max_held`` in tasks. Checked on construction."""

    lease_ms: int = 300_000
    """How long an agent may hold a task before it is taken back (failover)."""
    heartbeat_interval_ms: int = 1_000
    """The agents' heartbeat interval (what ``taskd agent --heartbeat-ms`` says)."""
    suspect_after_ms: int = 3_000
    down_after_ms: int = 10_000
    """An agent silent this long is DOWN: its tasks go to others."""
    max_held: int = 100_000
    """Tasks held waiting for a slot before the task topics are paused (back-pressure)."""
    resume_at: int | None = None
    """Held tasks at which the task topics are read again; None: 80% of ``max_held``."""
    aging_ms: int | None = 30_000
    """Each ``aging_ms`` waited raises a task one priority level; None: strict priority."""
    no_capable_agent_ms: int | None = 60_000
    """A task no live agent could ever run (skills, zone, target) waits this long for one to
    join, then goes to the dead letters as NO_CAPABLE_AGENT; None: it waits for ever."""
    tick_ms: int = 100
    """Longest sleep of the loop between two ticks of the core."""
    dedupe_window: int = 100_000
    """Ended task ids remembered (in memory and in the ``ended`` table) to drop duplicates."""
    session_timeout_ms: int = 6_000
    """Kafka group session: a killed instance's shards are taken over after this long, plus a
    rebalance and their recovery from the changelog (6 s is the broker's least by default:
    ``group.min.session.timeout.ms``)."""
    instance_id: str | None = None
    """Static membership of the group (``group.instance.id``): an instance restarted under the
    same id within ``session_timeout_ms`` gets its shards back and the others go on without a
    rebalance. The price: an instance that stops, even cleanly, keeps its shards until the
    session runs out. Unique per instance; None: dynamic membership (a stop hands the shards
    over at once)."""
    commit_interval_ms: int = 100
    """How often a checkpoint makes the work durable and commits the inputs: a crash may
    dispatch again what was dispatched in about this long before it (``checkpoint.py``)."""
    web_enabled: bool = True
    """Serve the HTTP views (``/metrics``, ``/status``, ``/context``, the dashboard) on
    ``settings.http_host:http_port``. Faust's own web server is always off."""
    events_enabled: bool = False
    """Write one lifecycle event per task to the ``events`` topic when it ends (best effort)."""
    prefetch_share: float = 0.15
    """Tasks sent to an agent beyond its slots, as a share of its capacity (rounded down: an
    agent of fewer than 1/share slots gets none): a slot that frees finds its next task already
    at the agent instead of waiting a round trip through the dispatcher. The agent starts
    waiting tasks most urgent first. 0: never more tasks than slots."""
    strategy: str = AFFINITY
    """The routing strategy (``streams.core.routing.STRATEGY_NAMES``); the push baselines
    (``round-robin-push``, ``random-push``) exist to compare against."""

    def __post_init__(self) -> None:
        for name in (
            "lease_ms",
            "heartbeat_interval_ms",
            "tick_ms",
            "max_held",
            "dedupe_window",
            "session_timeout_ms",
            "commit_interval_ms",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"dispatcher {name} must be >= 1 (got {getattr(self, name)})")
        if not 0.0 <= self.prefetch_share <= 1.0:
            raise ConfigError(
                f"dispatcher prefetch_share must be in 0..1 (got {self.prefetch_share})"
            )
        self.health()  # raises ConfigError for timings out of order
        check_strategy_name(self.strategy, field="dispatcher strategy")

    @property
    def commit_interval_s(self) -> float:
        return self.commit_interval_ms / 1000

    def slots(self, capacity: int) -> int:
        """The slots the core counts for an agent of ``capacity``: its own plus the prefetch."""
        return capacity + int(capacity * self.prefetch_share)

    def health(self) -> HealthConfig:
        return HealthConfig(
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            suspect_after_ms=self.suspect_after_ms,
            down_after_ms=self.down_after_ms,
        )

    def distributor(self, settings: Settings) -> DistributorConfig:
        """The core's configuration: levels and retry tiers from the settings, the rest here."""
        scheduler = SchedulerConfig(
            levels=settings.priority_levels,
            aging_ms=self.aging_ms,
            no_capable_agent_timeout_ms=self.no_capable_agent_ms,
            max_held=self.max_held,
            resume_at=self.resume_at,
        )
        return DistributorConfig(
            scheduler=scheduler,
            health=self.health(),
            lease_ms=self.lease_ms,
            retry_backoffs_ms=settings.retry_tiers_ms,
            dedupe_window=self.dedupe_window,
            routing=RoutingConfig(strategy=self.strategy),
        )
