"""Topic administration against the real broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.adapters.admin import (
    TopicState,
    create_topics,
    delete_groups,
    delete_topics,
    list_topics,
    topic_partitions,
    topics_under,
    wait_for_topics,
)
from streams.errors import TopicError
from streams.settings import Settings


def test_create_makes_every_topic_with_its_partitions(
    settings: Settings, admin: AdminClient
) -> None:
    try:
        reports = create_topics(settings, admin)
        on_cluster = topic_partitions(admin)
        names = settings.topics
        assert {r.state for r in reports} == {TopicState.CREATED}
        assert on_cluster[names.tasks(0)] == settings.shards
        assert on_cluster[names.tasks(settings.priority_levels - 1)] == settings.shards
        assert on_cluster[names.dispatch] == settings.dispatch_partitions
        assert on_cluster[names.registry] == 1
        assert on_cluster[names.state] == settings.shards
        assert on_cluster[names.dispatchers] == 1
        assert on_cluster[names.replies] == settings.shards
        assert on_cluster[names.cancels] == settings.shards
        assert len(reports) == settings.priority_levels + len(settings.retry_tiers_ms) + 10
    finally:
        delete_topics(settings, admin)


def test_create_twice_changes_nothing(settings: Settings, admin: AdminClient) -> None:
    try:
        create_topics(settings, admin)
        before = topic_partitions(admin)
        second = create_topics(settings, admin)
        assert {r.state for r in second} == {TopicState.EXISTS}
        assert topic_partitions(admin) == before
    finally:
        delete_topics(settings, admin)


def test_registry_is_compacted_and_tasks_keep_retention(
    settings: Settings, admin: AdminClient
) -> None:
    from confluent_kafka.admin import ConfigResource, ResourceType

    try:
        create_topics(settings, admin)
        resources = [
            ConfigResource(ResourceType.TOPIC, settings.topics.registry),
            ConfigResource(ResourceType.TOPIC, settings.topics.tasks(0)),
        ]
        described = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
        assert described[settings.topics.registry]["cleanup.policy"].value == "compact"
        retention = described[settings.topics.tasks(0)]["retention.ms"].value
        assert retention == str(settings.retention_ms)
    finally:
        delete_topics(settings, admin)


def test_list_reports_missing_and_differing_topics(settings: Settings, admin: AdminClient) -> None:
    names = settings.topics
    try:
        admin.create_topics([NewTopic(names.results, 5, 1)])[names.results].result()
        wait_for_topics(admin, {names.results: 5})
        listed = {r.name: r for r in list_topics(settings, admin)}
        assert listed[names.results].state is TopicState.DIFFERS
        assert listed[names.results].partitions == 5
        assert listed[names.tasks(0)].partitions == 0
        created = {r.name: r.state for r in create_topics(settings, admin)}
        assert created[names.results] is TopicState.DIFFERS  # reported, never re-partitioned
        assert created[names.tasks(0)] is TopicState.CREATED
    finally:
        delete_topics(settings, admin)


def test_an_empty_prefix_names_no_topic_and_no_group_to_delete(
    settings: Settings, admin: AdminClient
) -> None:
    everything = settings.model_copy(update={"topic_prefix": ""})
    for clean_up in (topics_under, delete_topics, delete_groups):
        with pytest.raises(TopicError, match="empty topic prefix"):
            clean_up(everything, admin)
