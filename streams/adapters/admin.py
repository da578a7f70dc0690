"""Topic administration on confluent-kafka's AdminClient: create the architecture's topics.

Creation is idempotent: a topic that exists is left alone and reported as such; one whose
partition count differs from the settings is reported, never changed behind the user's back
(re-partitioning a keyed topic moves keys between shards).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.adapters.kafka import client_config
from streams.errors import TopicError
from streams.settings import Settings
from streams.wire.topics import TopicSpec

_TIMEOUT_S = 30.0


class TopicState(enum.Enum):
    CREATED = "created"
    EXISTS = "exists"
    DIFFERS = "exists, partitions differ"


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What ``create_topics`` did with one topic."""

    name: str
    state: TopicState
    partitions: int
    wanted_partitions: int


def admin_client(settings: Settings) -> AdminClient:
    """An admin client whose librdkafka lines go to our logger (``client_config``)."""
    return AdminClient(client_config(settings))


def wanted_topics(settings: Settings) -> list[TopicSpec]:
    return settings.topics.specs(
        shards=settings.shards, dispatch_partitions=settings.dispatch_partitions
    )


def topic_partitions(admin: AdminClient) -> dict[str, int]:
    """Every topic on the cluster with its partition count."""
    try:
        metadata = admin.list_topics(timeout=_TIMEOUT_S)
    except KafkaException as error:
        raise TopicError(f"cannot list topics: {error.args[0].str()}") from error
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def create_topics(settings: Settings, admin: AdminClient | None = None) -> list[TopicReport]:
    """Create every missing topic of the architecture; report the state of each."""
    admin = admin or admin_client(settings)
    specs = wanted_topics(settings)
    existing = topic_partitions(admin)
    missing = [spec for spec in specs if spec.name not in existing]
    created = _create(admin, missing, settings) if missing else set()
    if created:
        wait_for_topics(admin, {spec.name: spec.partitions for spec in missing})
        existing = topic_partitions(admin)
    return [_report(spec, existing, created) for spec in specs]


def wait_for_topics(
    admin: AdminClient, partitions: Mapping[str, int], timeout_s: float = _TIMEOUT_S
) -> None:
    """Wait until the cluster metadata shows every topic with its partitions.

    A topic is created before every broker's metadata cache knows it; describing or using it in
    that window fails with UNKNOWN_TOPIC_OR_PART.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        existing = topic_partitions(admin)
        late = [name for name, count in partitions.items() if existing.get(name, 0) < count]
        if not late:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"topics not visible after {timeout_s:.0f} s: {late}")
        time.sleep(0.1)


def _create(admin: AdminClient, specs: Sequence[TopicSpec], settings: Settings) -> set[str]:
    new_topics = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=settings.replication_factor,
            config=_topic_config(spec, settings),
        )
        for spec in specs
    ]
    created: set[str] = set()
    for name, future in admin.create_topics(new_topics, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
            created.add(name)
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won
                raise TopicError(f"cannot create topic {name}: {error.args[0].str()}") from error
    return created


def _topic_config(spec: TopicSpec, settings: Settings) -> dict[str, str]:
    if spec.compacted:
        roll = {} if spec.segment_ms is None else {"segment.ms": str(spec.segment_ms)}
        return {"cleanup.policy": "compact", **roll}
    return {"retention.ms": str(settings.retention_ms)}


def _report(spec: TopicSpec, existing: dict[str, int], created: set[str]) -> TopicReport:
    partitions = existing.get(spec.name, 0)
    if spec.name in created:
        state = TopicState.CREATED
    elif partitions == spec.partitions:
        state = TopicState.EXISTS
    else:
        state = TopicState.DIFFERS
    return TopicReport(spec.name, state, partitions, spec.partitions)


def list_topics(settings: Settings, admin: AdminClient | None = None) -> list[TopicReport]:
    """The architecture's topics as they are on the cluster (partitions 0: missing)."""
    existing = topic_partitions(admin or admin_client(settings))
    return [_report(spec, existing, set()) for spec in wanted_topics(settings)]


def topics_under(settings: Settings, admin: AdminClient | None = None) -> list[str]:
    """The names of the topics under the configured prefix, sorted; TopicError for an empty
    prefix, which would name every topic of the cluster."""
    prefix = _cleanable_prefix(settings)
    admin = admin or admin_client(settings)
    return sorted(name for name in topic_partitions(admin) if name.startswith(prefix))


def _cleanable_prefix(settings: Settings) -> str:
    """The prefix whose topics and groups may be listed for deletion: not the empty one."""
    if not settings.topic_prefix:
        raise TopicError("refusing an empty topic prefix here: it would be every topic")
    return settings.topic_prefix


def delete_groups(
    settings: Settings, admin: AdminClient | None = None
) -> tuple[list[str], list[str]]:
    """Delete the consumer groups under the configured prefix (the dispatchers', the agents',
    the views'): (deleted, kept with why). A group with live members cannot be deleted."""
    prefix = _cleanable_prefix(settings)
    admin = admin or admin_client(settings)
    try:
        listing = admin.list_consumer_groups(request_timeout=_TIMEOUT_S).result()
    except KafkaException as error:
        return [], [f"the consumer groups could not be listed: {error.args[0].str()}"]
    names = sorted(group.group_id for group in listing.valid if group.group_id.startswith(prefix))
    deleted: list[str] = []
    kept: list[str] = []
    if not names:
        return deleted, kept
    for name, future in admin.delete_consumer_groups(names, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
            deleted.append(name)
        except KafkaException as error:
            kept.append(f"{name}: {error.args[0].str()}")
    return deleted, kept


def delete_topics(settings: Settings, admin: AdminClient | None = None) -> list[str]:
    """Delete every topic under the configured prefix (tests and demos clean up with it)."""
    admin = admin or admin_client(settings)
    names = topics_under(settings, admin)
    if not names:
        return []
    for name, future in admin.delete_topics(names, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as error:
            raise TopicError(f"cannot delete topic {name}: {error.args[0].str()}") from error
    return names
