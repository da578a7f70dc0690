"""faust-streaming (aiokafka transport) works against the pinned Kafka broker.

An agent reads a topic, keeps a count per key in a RocksDB table with its changelog, and a
second app instance with a fresh data dir recovers the table from that changelog.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import faust
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.adapters.admin import wait_for_topics

MESSAGES = 40


def _app(app_id: str, bootstrap: str, data_dir: Path) -> faust.App:
    return faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="rocksdb://",
        datadir=str(data_dir),
        web_enabled=False,
        topic_partitions=2,
        env_prefix="TASKD_TEST_FAUST_",
    )


async def _count(
    app_id: str, topic_name: str, bootstrap: str, data_dir: Path, send: bool
) -> tuple[dict[str, int], int]:
    app = _app(app_id, bootstrap, data_dir)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw", partitions=2)
    counts = app.Table("counts", default=int, partitions=2)
    seen: list[bytes] = []

    @app.agent(topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            key = event.key.decode() if isinstance(event.key, bytes) else str(event.key)
            counts[key] += 1
            seen.append(event.value)

    await app.start()
    try:
        if send:
            for index in range(MESSAGES):
                await topic.send(key=f"k{index % 4}".encode(), value=b"%d" % index)
            await _until(lambda: len(seen) >= MESSAGES)
        else:
            await _until(lambda: sum(counts.values()) >= MESSAGES)
        return {str(key): int(value) for key, value in counts.items()}, len(seen)
    finally:
        await app.stop()


async def _until(condition: object, timeout_s: float = 60.0) -> None:
    assert callable(condition)
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out waiting for the Faust app")


def test_faust_table_survives_a_fresh_instance(bootstrap_servers: str, tmp_path: Path) -> None:
    topic_name = f"faust-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    admin.create_topics([NewTopic(topic_name, 2, 1)])[topic_name].result()
    wait_for_topics(admin, {topic_name: 2})
    app_id = f"taskd-test-{uuid.uuid4().hex[:8]}"
    try:
        first = asyncio.run(_count(app_id, topic_name, bootstrap_servers, tmp_path / "a", True))
        assert first == ({"k0": 10, "k1": 10, "k2": 10, "k3": 10}, MESSAGES)
        recovered = asyncio.run(
            _count(app_id, topic_name, bootstrap_servers, tmp_path / "b", False)
        )
        assert recovered == (first[0], 0)  # from the changelog, not by reading the input again
    finally:
        names = [topic_name, f"{app_id}-counts-changelog"]
        for future in admin.delete_topics(names).values():
            future.result()
