"""The claim protocol: an agent takes one dispatch partition through the registry topic.

Read the registry from its beginning to its end; choose a partition (its own on a restart,
else the lowest free one: :meth:`RegistryView.choose`); record an ACTIVE claim with the next
epoch and the partition's end offset; read on to that record and, if another agent's claim
came first, claim again. Renewed every third of the TTL; RELEASED on a clean stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka import KafkaError as ClientError

from streams.adapters.kafka import check_broker, codec_for, end_offset, make_consumer, now_ms
from streams.adapters.worker.config import AgentConfig
from streams.adapters.worker.errors import AgentError
from streams.adapters.worker.kafka import Writer
from streams.adapters.worker.registry_view import RegistryView, beats
from streams.errors import DecodeError, KafkaError
from streams.settings import Settings
from streams.wire import AgentRegistration, RecordCodec, RegistrationStatus

log = logging.getLogger(__name__)
_POLL_S = 0.2


class Registrar:
    """Claims, renews and releases one agent's dispatch partition."""

    def __init__(
        self,
        config: AgentConfig,
        settings: Settings,
        writer: Writer,
        codec: RecordCodec | None = None,
    ) -> None:
        """``codec``: the wire framing; by default the settings' (:func:`codec_for`)."""
        self._config = config
        self._settings = settings
        self._writer = writer
        self._codec = codec or codec_for(settings)
        self._timeout_s = config.connect_timeout_ms / 1000
        self.current: AgentRegistration | None = None
        """The claim as last written (None before ``claim``)."""

    def claim(self) -> AgentRegistration:
        """Take a partition (blocking: run it in a thread); its registration.

        KafkaError when no broker answers in time, ConfigError when the topics are missing,
        AgentError when every partition is held or too many races were lost.
        """
        consumer = make_consumer(
            self._settings,
            group_id=f"{self._settings.topic_prefix}agent.registry-reader.{uuid.uuid4().hex}",
            extra={"enable.partition.eof": True},
        )
        try:
            return self._claim(consumer)
        finally:
            consumer.close()

    async def renew(self) -> None:
        """Re-write the claim with a new ``renewed_at`` so it keeps holding its partition."""
        if self.current is not None:
            await self._write(dataclasses.replace(self.current, renewed_at=now_ms()))

    async def release(self) -> None:
        """Write the claim RELEASED: the partition is free (re-claimed first by this agent)."""
        if self.current is not None:
            released = RegistrationStatus.RELEASED
            await self._write(
                dataclasses.replace(self.current, status=released, renewed_at=now_ms())
            )

    async def keep_renewing(self) -> None:
        """Renew every third of the TTL until cancelled; a failed renewal is logged, not fatal."""
        while True:
            await asyncio.sleep(self._config.registration_ttl_ms / 3000)
            try:
                await self.renew()
            except KafkaError as error:
                log.warning("registration renewal failed: %s", error)

    def _claim(self, consumer: Consumer) -> AgentRegistration:
        topics = self._settings.topics
        partitions = check_broker(consumer, self._settings, topics.dispatch, self._timeout_s)
        check_broker(consumer, self._settings, topics.registry, self._timeout_s)
        view = RegistryView()
        consumer.assign([TopicPartition(topics.registry, 0, OFFSET_BEGINNING)])
        self._read_through(consumer, view, self._end_offset(consumer, topics.registry, 0) - 1)
        for attempt in range(self._config.claim_attempts):
            # a lost race means others start too: spread out instead of all taking the lowest
            claim = self._try_claim(consumer, view, partitions, spread=attempt > 0)
            if claim is not None:
                self.current = claim
                return claim
        raise AgentError(
            f"lost the race for a dispatch partition {self._config.claim_attempts} times; "
            "too many agents are starting at once: start this one again"
        )

    def _try_claim(
        self, consumer: Consumer, view: RegistryView, partitions: int, *, spread: bool
    ) -> AgentRegistration | None:
        config, now = self._config, now_ms()
        partition = view.choose(
            config.agent_id,
            partitions=partitions,
            now_ms=now,
            ttl_ms=config.registration_ttl_ms,
            spread=spread,
        )
        if partition is None:
            raise AgentError(_all_taken(self._settings.topics.dispatch, partitions))
        claim = AgentRegistration(
            agent_id=config.agent_id,
            partition=partition,
            epoch=view.next_epoch(partition),
            start_offset=self._end_offset(consumer, self._settings.topics.dispatch, partition),
            status=RegistrationStatus.ACTIVE,
            registered_at=now,
            renewed_at=now,
            capacity=config.capacity,
            skills=config.skills,
            zone=config.zone,
        )
        offset = self._writer.send_sync(
            self._settings.topics.registry,
            self._codec.encode(claim),
            key=config.agent_id,
            timeout_s=self._timeout_s,
        )
        read = self._read_through(consumer, view, offset)  # up to and including our claim
        return None if any(beats(record, claim) for record in read) else claim

    def _read_through(
        self, consumer: Consumer, view: RegistryView, last_offset: int
    ) -> list[AgentRegistration]:
        """Apply every record up to ``last_offset`` (inclusive) to ``view``; those records."""
        read: list[AgentRegistration] = []
        deadline = time.monotonic() + self._timeout_s
        position = _position(consumer)
        while position <= last_offset:
            if time.monotonic() > deadline:
                raise KafkaError(f"the registry could not be read within {self._timeout_s:g} s")
            message = consumer.poll(_POLL_S)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != ClientError._PARTITION_EOF:
                raise KafkaError(f"cannot read the registry: {error.str()}")
            position = max(position, int(message.offset() or 0) + (error is None))
            record = None if error is not None else self._decode(message.value())
            if record is not None:
                view.apply(record)
                read.append(record)
        return read

    def _decode(self, value: bytes | None) -> AgentRegistration | None:
        if value is None:  # a tombstone: compaction's deletion marker
            return None
        try:
            return self._codec.decode(value, AgentRegistration)
        except DecodeError as error:
            log.warning("skipping an undecodable registry record: %s", error)
            return None

    def _end_offset(self, consumer: Consumer, topic: str, partition: int) -> int:
        return end_offset(consumer, topic, partition, timeout_s=self._timeout_s)

    async def _write(self, record: AgentRegistration) -> None:
        await self._writer.send(
            self._settings.topics.registry, self._codec.encode(record), key=record.agent_id
        )
        self.current = record


def _position(consumer: Consumer) -> int:
    """The next offset the (single) assigned partition will read; 0 before the first fetch."""
    (assigned,) = consumer.position(consumer.assignment())
    return max(int(assigned.offset), 0)


def _all_taken(topic: str, partitions: int) -> str:
    return (
        f"all {partitions} dispatch partitions are taken; add partitions with "
        f"`kafka-topics.sh --alter --topic {topic} --partitions {partitions * 2}` "
        "(and raise TASKD_DISPATCH_PARTITIONS to match)"
    )
