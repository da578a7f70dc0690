"""Handlers without a broker: loading, options, outcomes, batches, the demo and the config."""

from __future__ import annotations

import asyncio
import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from streams.adapters.worker.batching import Batcher, BatchSpec, batch_spec
from streams.adapters.worker.handlers import load_handler, parse_handler_options
from streams.adapters.worker.results import encode_output, failure, success
from streams.errors import ConfigError, TaskdError
from streams.examples import work
from streams.wire import Task, TaskStatus
from streams.worker import AgentConfig, FatalError, RetryableError, batch


def _task(payload: bytes = b"", task_id: str = "t1") -> Task:
    return Task(task_id=task_id, type="work", priority=0, payload=payload, submitted_at=0)


def test_a_handler_loads_from_module_and_function() -> None:
    assert load_handler("streams.examples:work") is work
    assert load_handler(work) is work


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("streams.examples", "expected module:function"),
        (":work", "expected module:function"),
        ("streams.nowhere:work", "cannot import module 'streams.nowhere'"),
        ("streams.examples:absent", "module 'streams.examples' has no function 'absent'"),
        ("streams.examples:__doc__", "'__doc__' is not a function"),
    ],
)
def test_a_bad_handler_is_a_config_error_saying_why(ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_handler(ref)


def test_handler_options_give_a_default_and_handlers_by_type() -> None:
    options = ["m:f", "resize=m:g", "ocr=pkg.mod:h"]
    assert parse_handler_options(options) == ("m:f", {"resize": "m:g", "ocr": "pkg.mod:h"})
    with pytest.raises(ConfigError, match="two handlers for every type"):
        parse_handler_options(["m:f", "m:g"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_handler_options(["a=m:f", "a=m:g"])


@pytest.mark.parametrize(
    ("value", "output"),
    [
        (b"\x00\xff", b"\x00\xff"),
        (bytearray(b"ab"), b"ab"),
        ("héllo", "héllo".encode()),
        (None, None),
        ({"a": [1, 2.5, None]}, b'{"a":[1,2.5,null]}'),
        (7, b"7"),
    ],
)
def test_outputs_are_bytes_text_or_json(value: Any, output: bytes | None) -> None:
    assert encode_output(value) == output
    assert success(value).status is TaskStatus.SUCCEEDED


def test_an_output_that_is_not_json_fails_the_attempt() -> None:
    outcome = success(float("nan"))
    assert outcome.status is TaskStatus.FAILED and "not JSON" in (outcome.error or "")


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (RetryableError("later"), TaskStatus.RETRYABLE, "later"),
        (FatalError("never"), TaskStatus.FAILED, "never"),
        (ValueError("odd"), TaskStatus.RETRYABLE, "ValueError: odd"),
        (RetryableError(), TaskStatus.RETRYABLE, "RetryableError"),
    ],
)
def test_exceptions_become_statuses(error: Exception, status: TaskStatus, text: str) -> None:
    assert (failure(error).status, failure(error).error) == (status, text)


def test_handler_errors_are_taskd_errors() -> None:
    assert issubclass(RetryableError, TaskdError) and issubclass(FatalError, TaskdError)


def test_the_demo_works_and_fails_as_its_payload_says() -> None:
    assert asyncio.run(work(_task(b'{"work_ms": 1}'))) == {"task_id": "t1", "worked_ms": 1.0}
    assert asyncio.run(work(_task(b""))) == {"task_id": "t1", "worked_ms": 0.0}
    with pytest.raises(RetryableError, match="failed on purpose"):
        asyncio.run(work(_task(b'{"fail": "retryable"}')))
    with pytest.raises(FatalError, match="failed on purpose"):
        asyncio.run(work(_task(b'{"fail": "fatal"}')))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "example payload is not valid JSON"),
        (b"\xff", "example payload is not valid JSON"),
        (b"[1]", "must be a JSON object, not list"),
        (b'{"work_ms": -1}', "work_ms must be a number >= 0"),
        (b'{"work_ms": "5"}', "work_ms must be a number >= 0"),
        (b'{"fail": "sometimes"}', 'fail must be "retryable" or "fatal"'),
    ],
)
def test_a_bad_demo_payload_is_fatal_with_a_clear_error(payload: bytes, message: str) -> None:
    with pytest.raises(FatalError, match=message):
        asyncio.run(work(_task(payload)))


def test_the_batch_decorator_marks_and_checks() -> None:
    @batch(max_size=4, max_wait_ms=10)
    def handle(tasks: list[Task]) -> list[str]:
        return [t.task_id for t in tasks]

    spec = batch_spec(handle)
    assert spec is not None and (spec.max_size, spec.max_wait_ms) == (4, 10)
    assert batch_spec(work) is None
    with pytest.raises(ConfigError, match="max_size >= 1"):
        batch(max_size=0, max_wait_ms=10)
    with pytest.raises(ConfigError, match="whole numbers"):  # the heartbeat's Avro ints
        batch(max_size=4, max_wait_ms=2.5)  # type: ignore[arg-type]


def _run_batch(function: Any, count: int) -> list[Any]:
    """Outputs (or errors) of ``count`` tasks fed at once to ``function`` in batches of 3."""

    async def scenario() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(function, BatchSpec(max_size=3, max_wait_ms=5), pool)
            calls = [batcher(_task(task_id=str(i))) for i in range(count)]
            return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(scenario())


def test_a_batch_groups_tasks_up_to_its_size_and_keeps_their_order() -> None:
    sizes: list[int] = []

    async def handle(tasks: list[Task]) -> list[str]:
        sizes.append(len(tasks))
        return [t.task_id for t in tasks]

    assert _run_batch(handle, 7) == [str(i) for i in range(7)]
    assert sizes == [3, 3, 1]  # the last one after max_wait_ms


def test_a_raising_batch_ends_every_task_and_a_wrong_length_is_retryable() -> None:
    def boom(tasks: list[Task]) -> list[str]:
        raise RetryableError("down")

    assert [str(e) for e in _run_batch(boom, 2)] == ["down", "down"]

    def short(tasks: list[Task]) -> list[str]:
        return []

    errors = _run_batch(short, 2)
    assert all(isinstance(e, RetryableError) and "0 outputs for 2 tasks" in str(e) for e in errors)


def test_the_config_refuses_bad_values_naming_them() -> None:
    with pytest.raises(ConfigError, match="capacity must be >= 1"):
        AgentConfig(agent_id="a", capacity=0, handler=work)
    with pytest.raises(ConfigError, match="at least one handler"):
        AgentConfig(agent_id="a", capacity=1)
    with pytest.raises(ConfigError, match="weight must be > 0"):
        AgentConfig(agent_id="a", capacity=1, handler=work, weight=0)
    for cost in (-1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="cost_per_task must be a finite number >= 0"):
            AgentConfig(agent_id="a", capacity=1, handler=work, cost_per_task=cost)
    config = AgentConfig(capacity=2, handlers={"x": "streams.examples:work"})
    assert config.agent_id and config.prefetch_slots == 2
    assert json.dumps(dict(config.handlers)) == '{"x": "streams.examples:work"}'
