"""Memory bounded by design: the windows hold what ``docs/memory.md`` says, and no more.

- ``LruMap``, the one bounded map behind every window, never holds more than its size, and
  forgets exactly the least recently used entries (checked against a model).
- The agent's window of attempts taken and the dispatcher's window of ended tasks are bounded
  by their settings, end to end: past the bound the oldest entry is forgotten.
- Every bound ``docs/memory.md`` quotes as a name and a number is the code's default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streams.adapters.dispatcher.agent_log import _INCARNATIONS_KEPT
from streams.adapters.dispatcher.engine import RAN_BEFORE_OUTPUT_BYTES, RAN_BEFORE_WINDOW
from streams.adapters.dispatcher.group import FORGET_AFTER_MS
from streams.adapters.dispatcher.intake import QUEUED_KBYTES
from streams.adapters.kafka import codec_for
from streams.adapters.logs import RateLimitedLog
from streams.adapters.metrics import MAX_TYPE_LABELS, AgentMetrics
from streams.adapters.replies import KEPT_OUTCOMES
from streams.adapters.worker.config import AgentConfig
from streams.adapters.worker.handlers import Invokers
from streams.adapters.worker.kafka import Writer
from streams.adapters.worker.runner import OVERTAKEN_S, STOPS_KEPT, TaskRunner
from streams.core.actions import DeadLetter
from streams.core.distributor import CANCEL_WINDOW, Distributor, DistributorConfig
from streams.core.events import TaskArrived
from streams.core.model import DeadLetterReason, Job
from streams.core.routing import RoutingConfig
from streams.core.routing.snapshot import MAX_CLASSES
from streams.core.routing.strategies.base import MAX_TIER_STATES
from streams.core.routing.strategies.hashing import MAX_RINGS
from streams.core.scheduling.fairness import MAX_TENANTS
from streams.core.stats import BREAKDOWN_KEYS, EXACT_SAMPLES
from streams.core.window import LruMap
from streams.dispatcher_config import DispatcherConfig
from streams.settings import Settings
from streams.wire import AgentRegistration, Assignment, RegistrationStatus, Task

MEMORY_DOC = Path(__file__).resolve().parents[1] / "docs" / "memory.md"
QUOTED_BOUND = re.compile(r"`([A-Za-z_][\w.]*)` = (\d[\d,]*)")
"""A bound as the page quotes it: `Name` = 100,000."""


def _default(cls: type, name: str) -> Any:
    """The default of field ``name`` of a dataclass or a pydantic model."""
    if dataclasses.is_dataclass(cls):
        return {field.name: field for field in dataclasses.fields(cls)}[name].default
    return cls.model_fields[name].default  # type: ignore[attr-defined]


CODE_BOUNDS: dict[str, Any] = {
    "AgentConfig.seen_attempts": _default(AgentConfig, "seen_attempts"),
    "AgentConfig.result_linger_ms": _default(AgentConfig, "result_linger_ms"),
    "DispatcherConfig.dedupe_window": _default(DispatcherConfig, "dedupe_window"),
    "DispatcherConfig.max_held": _default(DispatcherConfig, "max_held"),
    "DispatcherConfig.no_capable_agent_ms": _default(DispatcherConfig, "no_capable_agent_ms"),
    "DispatcherConfig.down_after_ms": _default(DispatcherConfig, "down_after_ms"),
    "DispatcherConfig.commit_interval_ms": _default(DispatcherConfig, "commit_interval_ms"),
    "RoutingConfig.affinity_keys_max": _default(RoutingConfig, "affinity_keys_max"),
    "RoutingConfig.virtual_nodes": _default(RoutingConfig, "virtual_nodes"),
    "Settings.max_task_id_bytes": _default(Settings, "max_task_id_bytes"),
    "Settings.max_payload_bytes": _default(Settings, "max_payload_bytes"),
    "Settings.dispatch_partitions": _default(Settings, "dispatch_partitions"),
    "Settings.shards": _default(Settings, "shards"),
    "RateLimitedLog.max_keys": inspect.signature(RateLimitedLog).parameters["max_keys"].default,
    "EXACT_SAMPLES": EXACT_SAMPLES,
    "BREAKDOWN_KEYS": BREAKDOWN_KEYS,
    "MAX_RINGS": MAX_RINGS,
    "MAX_TENANTS": MAX_TENANTS,
    "MAX_TIER_STATES": MAX_TIER_STATES,
    "MAX_CLASSES": MAX_CLASSES,
    "MAX_TYPE_LABELS": MAX_TYPE_LABELS,
    "RAN_BEFORE_WINDOW": RAN_BEFORE_WINDOW,
    "RAN_BEFORE_OUTPUT_BYTES": RAN_BEFORE_OUTPUT_BYTES,
    "QUEUED_KBYTES": QUEUED_KBYTES,
    "OVERTAKEN_S": OVERTAKEN_S,
    "FORGET_AFTER_MS": FORGET_AFTER_MS,
    "_INCARNATIONS_KEPT": _INCARNATIONS_KEPT,
    "CANCEL_WINDOW": CANCEL_WINDOW,
    "STOPS_KEPT": STOPS_KEPT,
    "KEPT_OUTCOMES": KEPT_OUTCOMES,
}
"""Every bound the page quotes, as the code has it (read, never written twice)."""


# --- the page against the code ------------------------------------------------------------------


def _quoted_bounds() -> list[tuple[str, int]]:
    text = MEMORY_DOC.read_text(encoding="utf-8")
    return [(name, int(number.replace(",", ""))) for name, number in QUOTED_BOUND.findall(text)]


def test_every_bound_the_page_quotes_is_the_codes_default() -> None:
    quoted = _quoted_bounds()
    unknown = sorted({name for name, _ in quoted} - CODE_BOUNDS.keys())
    assert unknown == [], "docs/memory.md quotes bounds this test does not read from the code"
    wrong = [
        f"{name}: page {number:,}, code {CODE_BOUNDS[name]}"
        for name, number in quoted
        if CODE_BOUNDS[name] != number
    ]
    assert wrong == [], "docs/memory.md disagrees with the code"


def test_the_page_quotes_every_bound_it_is_checked_against() -> None:
    quoted = {name for name, _ in _quoted_bounds()}
    assert sorted(CODE_BOUNDS.keys() - quoted) == []
    assert {"AgentConfig.seen_attempts", "DispatcherConfig.dedupe_window"} <= quoted


# --- LruMap -------------------------------------------------------------------------------------

_OPS = st.lists(
    st.tuples(st.sampled_from(["put", "get", "discard"]), st.integers(0, 12)), max_size=200
)


@given(max_entries=st.integers(1, 8), ops=_OPS)
def test_a_bounded_map_keeps_the_most_recently_used_and_never_more_than_its_size(
    max_entries: int, ops: list[tuple[str, int]]
) -> None:
    window: LruMap[int, int] = LruMap(max_entries)
    model: OrderedDict[int, int] = OrderedDict()  # least recently used first
    for step, (op, key) in enumerate(ops):
        if op == "put":
            model[key] = step
            model.move_to_end(key)
            expected = model.popitem(last=False) if len(model) > max_entries else None
            assert window.put(key, step) == expected
        elif op == "get":
            assert window.get(key) == model.get(key)
            if key in model:
                model.move_to_end(key)
        else:
            window.discard(key)
            model.pop(key, None)
        assert len(window) <= max_entries
        assert list(window) == list(model)


@given(max_entries=st.integers(1, 50), distinct=st.integers(0, 500))
def test_a_stream_of_distinct_keys_leaves_only_the_last_ones(
    max_entries: int, distinct: int
) -> None:
    window: LruMap[tuple[str, int], None] = LruMap(max_entries)
    for index in range(distinct):
        window.put((f"{index:032x}", 0), None)
    assert len(window) == min(distinct, max_entries)
    assert list(window) == [
        (f"{index:032x}", 0) for index in range(max(0, distinct - max_entries), distinct)
    ]


# --- the agent's window of attempts taken -------------------------------------------------------


def _runner(registry: CollectorRegistry, **options: Any) -> TaskRunner:
    """An agent's runner, not started: only its admission of assignments is used."""
    config = AgentConfig(agent_id="a1", capacity=1, handler=lambda task: None, **options)
    settings = Settings()
    claim = AgentRegistration(
        agent_id="a1",
        partition=0,
        epoch=1,
        start_offset=0,
        status=RegistrationStatus.ACTIVE,
        registered_at=0,
        renewed_at=0,
        capacity=1,
    )
    return TaskRunner(
        config,
        settings,
        claim,
        invokers=cast(Invokers, None),  # admission runs no handler
        writer=cast(Writer, None),  # and writes nothing
        codec=codec_for(settings),
        metrics=AgentMetrics(registry, capacity=1),
        wake=asyncio.Event(),
    )


def _assignment(task_id: str, attempt: int = 0) -> Assignment:
    task = Task(task_id=task_id, type="t", priority=0, payload=b"", submitted_at=0, attempt=attempt)
    return Assignment(
        task=task,
        agent_id="a1",
        epoch=1,
        dispatched_at=0,
        lease_ms=1_000,
        dispatcher_shard=0,
        reply_partition=0,
    )


def test_an_agent_remembers_the_attempts_it_took_up_to_seen_attempts() -> None:
    registry = CollectorRegistry()
    admit = _runner(registry, seen_attempts=3)._admit
    assert [admit(_assignment(task_id)) for task_id in ("t1", "t2", "t3")] == [True] * 3
    assert not admit(_assignment("t3"))  # a repeat within the window is skipped
    assert admit(_assignment("t3", attempt=1))  # a retry is another attempt: t1 is forgotten
    assert admit(_assignment("t1"))  # past the window: taken again, as documented
    assert not admit(_assignment("t3", attempt=1))
    skipped = registry.get_sample_value(
        "taskd_agent_assignments_skipped_total", {"reason": "repeated_attempt"}
    )
    assert skipped == 2


def test_an_agents_window_is_sized_by_the_default_seen_attempts() -> None:
    window = _runner(CollectorRegistry())._seen
    assert window.max_entries == CODE_BOUNDS["AgentConfig.seen_attempts"]


# --- the dispatcher's window of ended tasks -----------------------------------------------------


def _expired(task_id: str) -> Job:
    """A task whose TTL has passed: it ends in the dead letters as soon as it arrives."""
    return Job(task_id, priority=0, submitted_ms=0, expires_ms=1)


def test_the_dispatcher_drops_duplicates_of_the_last_dedupe_window_ended_tasks() -> None:
    core = Distributor(DistributorConfig(dedupe_window=3))
    jobs = [_expired(f"t{index}") for index in range(4)]
    actions = core.handle([TaskArrived(job) for job in jobs], now_ms=10)
    assert [a.reason for a in actions if isinstance(a, DeadLetter)] == [
        DeadLetterReason.EXPIRED
    ] * 4
    assert [core.is_duplicate(job) for job in jobs] == [False, True, True, True]


def test_the_dispatcher_hands_its_dedupe_window_to_the_core() -> None:
    config = DispatcherConfig()
    assert config.dedupe_window == CODE_BOUNDS["DispatcherConfig.dedupe_window"]
    assert config.distributor(Settings()).dedupe_window == config.dedupe_window
