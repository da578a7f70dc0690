"""``taskd topics delete`` as typed: every topic and consumer group under the prefix, after a
confirmation (or ``--yes``); another prefix's topics untouched."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.adapters.admin import create_topics, delete_topics, topic_partitions
from streams.settings import Settings
from tests.e2e.test_submit_cli import taskd


def _ours(settings: Settings, admin: AdminClient) -> list[str]:
    return [name for name in topic_partitions(admin) if name.startswith(settings.topic_prefix)]


def _leave_a_group(settings: Settings) -> str:
    """A consumer group under the prefix with a committed offset and no member left."""
    group = f"{settings.topic_prefix}agent.p0"
    consumer = Consumer({**settings.kafka_config(), "group.id": group})
    consumer.commit(offsets=[TopicPartition(settings.topics.dispatch, 0, 0)], asynchronous=False)
    consumer.close()
    return group


def test_delete_asks_then_removes_every_topic_and_group_under_the_prefix(
    settings: Settings, admin: AdminClient
) -> None:
    other = settings.model_copy(update={"topic_prefix": f"other{settings.topic_prefix}"})
    create_topics(settings, admin)
    create_topics(other, admin)
    try:
        group = _leave_a_group(settings)
        refused = taskd(settings, "topics", "delete", stdin="n\n")
        assert refused.returncode == 1 and _ours(settings, admin)
        deleted = taskd(settings, "topics", "delete", "--yes")
        assert deleted.returncode == 0, deleted.stderr
        assert f"deleted {len(settings.topics.specs(shards=1, dispatch_partitions=1))}" in (
            deleted.stdout
        )
        assert group in deleted.stdout
        assert _ours(settings, admin) == []
        assert _ours(other, admin)  # another prefix: untouched
        again = taskd(settings, "topics", "delete", "--yes")
        assert again.returncode == 0 and "no topic under the prefix" in again.stdout
    finally:
        delete_topics(settings, admin)
        delete_topics(other, admin)


def test_delete_takes_the_prefix_to_clean_up_as_an_option(
    settings: Settings, admin: AdminClient
) -> None:
    left_over = settings.model_copy(update={"topic_prefix": f"left{settings.topic_prefix}"})
    create_topics(settings, admin)
    create_topics(left_over, admin)
    try:
        deleted = taskd(settings, "topics", "delete", "--yes", "--prefix", left_over.topic_prefix)
        assert deleted.returncode == 0, deleted.stderr
        assert _ours(left_over, admin) == []
        assert _ours(settings, admin)  # the settings' own prefix: untouched
        empty = taskd(settings, "topics", "delete", "--yes", "--prefix", "")
        assert empty.returncode == 1 and "empty topic prefix" in empty.stderr
        bad = taskd(settings, "topics", "delete", "--yes", "--prefix", "a b")
        assert bad.returncode == 1 and "topic_prefix" in bad.stderr
        assert _ours(settings, admin)
    finally:
        delete_topics(settings, admin)
        delete_topics(left_over, admin)
