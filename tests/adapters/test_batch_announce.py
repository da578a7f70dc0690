"""Batch handlers announced: an agent names its ``@batch`` handlers by type in its heartbeat,
and the dispatcher hands the core what it can use (a malformed announcement is left out,
never a reason to stop)."""

from __future__ import annotations

from streams.adapters.dispatcher.engine import heartbeat_of
from streams.adapters.worker.batching import BatchSpec
from streams.adapters.worker.handlers import Handlers
from streams.core.grouping import BatchHandler
from streams.wire import AgentHeartbeat
from streams.worker import AgentConfig
from tests.wire.previous import heartbeat


def _heartbeat(**fields: object) -> AgentHeartbeat:
    return heartbeat(capacity=16, **fields)


def test_an_agent_announces_the_batch_handlers_of_its_types_only() -> None:
    config = AgentConfig(
        agent_id="a1",
        capacity=4,
        handler="streams.examples:embed",  # every type: names none, announced for none
        handlers={"embed": "streams.examples:embed", "work": "streams.examples:work"},
    )
    assert Handlers(config).batch_specs() == {"embed": BatchSpec(16, 50)}


def test_the_dispatcher_reads_the_batch_handlers_of_a_heartbeat() -> None:
    beat = _heartbeat(
        batch_max_size=(("embed", 16), ("ocr", 0)), batch_max_wait_ms=(("embed", 20),)
    )
    assert heartbeat_of(beat).batch_handlers == (BatchHandler("embed", 16, 20),)
    assert heartbeat_of(_heartbeat()).batch_handlers == ()
