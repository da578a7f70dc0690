"""Topic names of the architecture, derived from one prefix.

The names are a public contract (producers write to ``<prefix>tasks.p0`` ...): change them only on
purpose. Compaction and keys are described in docs/architecture.md, "Topics".
"""

from __future__ import annotations

from dataclasses import dataclass

REPORTS_SEGMENT_MS = 3_600_000
"""The ``dispatchers`` topic rolls a segment an hour, so that compaction keeps it to about one
record per instance (each writes one a second)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic to create: its name, partition count and whether it is compacted."""

    name: str
    partitions: int
    compacted: bool = False
    segment_ms: int | None = None
    """A compacted topic's segment roll (None: the broker's): compaction never touches the
    segment being written, so a topic of frequent small records needs short segments."""


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Every topic name for a prefix, a number of priority levels and the retry tiers."""

    prefix: str = "taskd."
    levels: int = 4
    retry_tiers_ms: tuple[int, ...] = (1_000, 10_000, 60_000)

    def tasks(self, priority: int) -> str:
        """Inbound topic of one priority level (0 most urgent)."""
        return f"{self.prefix}tasks.p{priority}"

    def all_tasks(self) -> list[str]:
        return [self.tasks(level) for level in range(self.levels)]

    def retry(self, tier: int) -> str:
        """Retry tier ``tier`` (0-based); its name carries its backoff, e.g. ``retry.10s``."""
        return f"{self.prefix}retry.{tier_label(self.retry_tiers_ms[tier])}"

    def all_retries(self) -> list[str]:
        return [self.retry(tier) for tier in range(len(self.retry_tiers_ms))]

    @property
    def dispatch(self) -> str:
        return f"{self.prefix}dispatch"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    @property
    def replies(self) -> str:
        """Tasks' outcomes, each to the partition its task asked for (clients waiting)."""
        return f"{self.prefix}replies"

    @property
    def heartbeats(self) -> str:
        return f"{self.prefix}heartbeats"

    @property
    def registry(self) -> str:
        return f"{self.prefix}registry"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def state(self) -> str:
        """The dispatcher's state changelog (compacted, one partition per shard)."""
        return f"{self.prefix}dispatcher-state"

    @property
    def cancels(self) -> str:
        """Requests to cancel tasks (``CancelRequest``), each on every partition."""
        return f"{self.prefix}cancels"

    @property
    def dispatchers(self) -> str:
        """The dispatcher instances' reports to each other (compacted, one partition)."""
        return f"{self.prefix}dispatchers"

    def specs(self, *, shards: int, dispatch_partitions: int) -> list[TopicSpec]:
        """Every topic of the architecture with its partition count."""
        sharded = [*self.all_tasks(), *self.all_retries(), self.results, self.heartbeats]
        sharded += [self.dlq, self.events, self.replies, self.cancels]
        specs = [TopicSpec(name, shards) for name in sharded]
        specs.append(TopicSpec(self.dispatch, dispatch_partitions))
        specs.append(TopicSpec(self.registry, 1, compacted=True))
        specs.append(TopicSpec(self.state, shards, compacted=True))
        specs.append(TopicSpec(self.dispatchers, 1, compacted=True, segment_ms=REPORTS_SEGMENT_MS))
        return specs


def tier_label(backoff_ms: int) -> str:
    """A readable duration for a topic name: 500ms, 1s, 10s, 5m, 2h."""
    for unit_ms, suffix in ((3_600_000, "h"), (60_000, "m"), (1_000, "s")):
        if backoff_ms >= unit_ms and backoff_ms % unit_ms == 0:
            return f"{backoff_ms // unit_ms}{suffix}"
    return f"{backoff_ms}ms"
