"""The claim protocol on the real broker: who gets which dispatch partition, with which epoch."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from streams.adapters.worker.kafka import Writer, now_ms
from streams.adapters.worker.registration import Registrar
from streams.adapters.worker.registry_view import home_partition
from streams.errors import ConfigError
from streams.settings import Settings
from streams.wire import AgentRegistration, RegistrationStatus
from streams.worker import Agent, AgentError
from tests.adapters.test_worker_support import (
    assignment,
    config,
    dispatch,
    on_any_port,
    produce,
    read,
    running,
)


async def _noop(task: object) -> None:
    return None


def _claim(settings: Settings, agent_id: str, **fields: object) -> AgentRegistration:
    writer = Writer(settings)
    try:
        return Registrar(
            config(agent_id=agent_id, handler=_noop, **fields), settings, writer
        ).claim()
    finally:
        writer.close()


def _registry(settings: Settings, count: int) -> list[AgentRegistration]:
    return [
        record
        for _, record in read(settings, settings.topics.registry, AgentRegistration, count=count)
    ]


def _record(agent_id: str, partition: int, epoch: int, **fields: object) -> AgentRegistration:
    values: dict[str, object] = {
        "agent_id": agent_id,
        "partition": partition,
        "epoch": epoch,
        "start_offset": 0,
        "status": RegistrationStatus.ACTIVE,
        "registered_at": now_ms(),
        "renewed_at": now_ms(),
        "capacity": 1,
        **fields,
    }
    return AgentRegistration(**values)  # type: ignore[arg-type]


def test_the_first_agent_claims_partition_0_and_a_second_partition_1(topics: Settings) -> None:
    first = _claim(topics, "a1", skills=("gpu",), zone="eu")
    second = _claim(topics, "a2")
    assert (first.partition, first.epoch, first.start_offset) == (0, 1, 0)
    assert (second.partition, second.epoch) == (1, 1)
    written = _registry(topics, 2)
    assert [r for r in written] == [first, second]
    assert (first.status, first.skills, first.zone, first.capacity) == (
        RegistrationStatus.ACTIVE,
        ("gpu",),
        "eu",
        2,
    )


def test_a_restarted_agent_reclaims_its_partition_with_the_next_epoch(topics: Settings) -> None:
    settings = on_any_port(topics)

    async def scenario() -> None:
        async with running(Agent(config(agent_id="a2", handler=_noop), settings)) as other:
            assert other.ready is not None and other.ready.partition == 0
            async with running(Agent(config(agent_id="a1", handler=_noop), settings)) as first:
                assert first.ready is not None
                assert (first.ready.partition, first.ready.epoch) == (1, 1)
            # a lagging dispatcher still writes with the old epoch: the restart must skip them
            dispatch(settings, 1, [assignment(epoch=1), assignment(epoch=1)])
            async with running(Agent(config(agent_id="a1", handler=_noop), settings)) as again:
                assert again.ready is not None
                assert (again.ready.partition, again.ready.epoch) == (1, 2)
                assert again.ready.start_offset == 2

    asyncio.run(scenario())
    mine = [r for r in _registry(topics, 6) if r.agent_id == "a1"]
    assert [(r.partition, r.epoch, r.status) for r in mine] == [
        (1, 1, RegistrationStatus.ACTIVE),
        (1, 1, RegistrationStatus.RELEASED),
        (1, 2, RegistrationStatus.ACTIVE),
        (1, 2, RegistrationStatus.RELEASED),
    ]
    assert mine[2].start_offset == 2


def test_agents_racing_for_one_free_partition_end_on_different_partitions(
    topics: Settings,
) -> None:
    ids = [f"racer-{i}" for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        claims = list(pool.map(lambda agent_id: _claim(topics, agent_id), ids))
    assert len({claim.partition for claim in claims}) == len(ids)
    assert {claim.epoch for claim in claims} == {1}


def test_a_claim_recorded_first_wins_and_the_loser_claims_again(topics: Settings) -> None:
    """Deterministic race: a rival's claim of partition 0 lands between our read and our write."""
    writer = Writer(topics)
    try:
        registrar = Registrar(config(agent_id="late", handler=_noop), topics, writer)
        rival = _record("early", 0, 1)
        original = registrar._try_claim

        def rival_writes_first(*args: object, **kwargs: object) -> AgentRegistration | None:
            if not produced:
                produce(topics, topics.topics.registry, [rival], key="early")
                produced.append(True)
            return original(*args, **kwargs)  # type: ignore[arg-type]

        produced: list[bool] = []
        registrar._try_claim = rival_writes_first  # type: ignore[method-assign]
        claim = registrar.claim()
    finally:
        writer.close()
    # having lost, it spreads out: the first free partition from its home (0 is the rival's)
    partitions = topics.dispatch_partitions
    home = home_partition("late", partitions)
    again = next(p for p in [*range(home, partitions), *range(home)] if p != 0)
    assert (claim.partition, claim.epoch) == (again, 1)
    assert [(r.agent_id, r.partition) for r in _registry(topics, 3)] == [
        ("early", 0),
        ("late", 0),
        ("late", again),
    ]


def test_released_and_expired_claims_free_their_partition(topics: Settings) -> None:
    ttl_ms = 30_000
    produce(
        topics,
        topics.topics.registry,
        [
            _record("gone", 0, 4, status=RegistrationStatus.RELEASED),
            _record("dead", 1, 2, renewed_at=now_ms() - 2 * ttl_ms),
            _record("alive", 2, 1),
        ],
    )
    first = _claim(topics, "new-1")
    second = _claim(topics, "new-2")
    third = _claim(topics, "new-3")
    assert [(c.partition, c.epoch) for c in (first, second, third)] == [(0, 5), (1, 3), (3, 1)]


def test_no_free_partition_is_one_clear_error(topics: Settings) -> None:
    produce(
        topics,
        topics.topics.registry,
        [_record(f"holder-{p}", p, 1) for p in range(topics.dispatch_partitions)],
    )
    with pytest.raises(AgentError, match="all 8 dispatch partitions are taken; add partitions"):
        _claim(topics, "one-too-many")


def test_missing_topics_are_one_clear_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"dispatch does not exist: create the topics with"):
        _claim(settings, "a1")
