"""The agent's heartbeats: its capacity, skills and load, every interval and on each change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from streams.adapters.worker.batching import BatchSpec
from streams.adapters.worker.config import AgentConfig
from streams.adapters.worker.kafka import Writer, now_ms
from streams.errors import KafkaError
from streams.settings import Settings
from streams.wire import AgentHeartbeat, AgentStatus, RecordCodec

log = logging.getLogger(__name__)

Load = Callable[[], tuple[int, int]]
"""Returns (tasks running now, tasks completed so far)."""


class Heartbeats:
    """Writes :class:`AgentHeartbeat` records keyed by agent id to the heartbeats topic."""

    def __init__(
        self,
        config: AgentConfig,
        settings: Settings,
        *,
        writer: Writer,
        codec: RecordCodec,
        load: Load,
        task_types: tuple[str, ...] | None = None,
        capacity: Callable[[], int] | None = None,
        batch_specs: Mapping[str, BatchSpec] | None = None,
    ) -> None:
        """``task_types``: the types the agent has handlers for (None: every type);
        ``capacity``: the slots to announce now (default: the configured capacity);
        ``batch_specs``: the ``@batch`` settings of its batch handlers, by type."""
        self._config = config
        self._task_types = task_types
        specs = dict(batch_specs or {})
        self._batch_max_size = tuple((name, spec.max_size) for name, spec in specs.items())
        self._batch_max_wait_ms = tuple((name, spec.max_wait_ms) for name, spec in specs.items())
        self._topic = settings.topics.heartbeats
        self._writer = writer
        self._codec = codec
        self._load = load
        self._capacity = capacity or (lambda: config.capacity)
        self.status = AgentStatus.READY

    async def announce(self, status: AgentStatus) -> None:
        """Switch to ``status`` and say so at once (waits until the broker has it)."""
        self.status = status
        await self._send()

    async def keep_sending(self) -> None:
        """Send one every heartbeat interval until cancelled; a failed one is logged."""
        while True:
            try:
                await self._send()
            except KafkaError as error:
                log.warning("heartbeat not written: %s", error)
            await asyncio.sleep(self._config.heartbeat_interval_ms / 1000)

    async def _send(self) -> None:
        in_flight, completed = self._load()
        config = self._config
        heartbeat = AgentHeartbeat(
            agent_id=config.agent_id,
            capacity=self._capacity(),
            skills=config.skills,
            zone=config.zone,
            weight=config.weight,
            cost_per_task=config.cost_per_task,
            status=self.status,
            in_flight=in_flight,
            completed=completed,
            sent_at=now_ms(),
            task_types=self._task_types,
            batch_max_size=self._batch_max_size,
            batch_max_wait_ms=self._batch_max_wait_ms,
            prefetch=config.prefetch_slots,
        )
        await self._writer.send(self._topic, self._codec.encode(heartbeat), key=config.agent_id)
