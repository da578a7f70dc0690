"""An example handler that ships with the package, ``streams.examples:work``: it sleeps as
long as its payload asks, so an agent can be tried, and the demo and the benchmark run, without
writing a handler first.

Payload (JSON object, all optional): ``work_ms`` (default 0) how long to work, done with
``asyncio.sleep`` so an agent's capacity is real concurrency; ``fail``: ``"retryable"`` or
``"fatal"`` to end the attempt with that failure after working.

``streams.examples:embed`` is a batch handler (``@batch(max_size=16, max_wait_ms=50)``) whose
call costs a fixed 20 ms plus 1 ms per task, as a model's forward pass might: each output
names the size of the batch it ran in, so what grouping did can be read from the results.

Two variables of the agent's process give a fleet different agents with one handler (``taskd
demo`` sets them): ``TASKD_DEMO_SPEED`` (default 1) divides the work time, so an agent of speed 2
runs a task in half the time; ``TASKD_DEMO_FAIL_RATE`` (default 0) is the probability that an
attempt ends RETRYABLE (a flaky agent).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import time
from typing import Any

from streams.errors import ConfigError
from streams.worker import FatalError, RetryableError, Task, batch

_FAILURES: dict[Any, type[Exception] | None] = {
    None: None,
    "retryable": RetryableError,
    "fatal": FatalError,
}


async def work(task: Task) -> dict[str, Any]:
    """Work ``work_ms`` then succeed (or fail as asked); the output says what was done."""
    work_ms, failure = parse_payload(task.payload)
    speed, fail_rate = agent_traits()
    await asyncio.sleep(work_ms / speed / 1000)
    if failure is not None:
        raise failure(f"example task {task.task_id} failed on purpose after {work_ms:g} ms")
    if fail_rate and random.random() < fail_rate:
        raise RetryableError(
            f"agent is flaky (TASKD_DEMO_FAIL_RATE): task {task.task_id} failed at random"
        )
    return {"task_id": task.task_id, "worked_ms": work_ms}


EMBED_CALL_MS = 20.0
"""The fixed cost of one call of ``embed``, whatever its batch."""
EMBED_TASK_MS = 1.0
"""What each task of the batch adds to a call of ``embed``."""


@batch(max_size=16, max_wait_ms=50)
def embed(tasks: list[Task]) -> list[dict[str, Any]]:
    """A batch handler: 20 ms a call plus 1 ms a task (in the agent's thread pool). Each output
    names its call (the id of the call's first task), the call's size and how long it took."""
    began = time.perf_counter()
    time.sleep((EMBED_CALL_MS + EMBED_TASK_MS * len(tasks)) / 1000)
    call_ms = round((time.perf_counter() - began) * 1000, 3)
    call = tasks[0].task_id
    return [
        {"task_id": task.task_id, "call": call, "batch": len(tasks), "call_ms": call_ms}
        for task in tasks
    ]


@functools.cache
def agent_traits() -> tuple[float, float]:
    """``(speed, fail rate)`` of this agent process from its environment (read once)."""
    return (
        _number("TASKD_DEMO_SPEED", 1.0, low=1e-3, high=1e3),
        _number("TASKD_DEMO_FAIL_RATE", 0.0, low=0.0, high=1.0),
    )


def _number(name: str, default: float, *, low: float, high: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {text!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in {low:g}..{high:g} (got {text})")
    return value


def parse_payload(payload: bytes) -> tuple[float, type[Exception] | None]:
    """``(work_ms, failure to raise or None)``; FatalError for a payload that makes no sense."""
    try:
        spec = json.loads(payload or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FatalError(f"example payload is not valid JSON: {error}") from error
    if not isinstance(spec, dict):
        raise FatalError(f"example payload must be a JSON object, not {type(spec).__name__}")
    work_ms = spec.get("work_ms", 0)
    if isinstance(work_ms, bool) or not isinstance(work_ms, int | float) or not work_ms >= 0:
        raise FatalError(f"example payload: work_ms must be a number >= 0 (got {work_ms!r})")
    fail = spec.get("fail")
    if not isinstance(fail, str | None) or fail not in _FAILURES:
        raise FatalError(f'example payload: fail must be "retryable" or "fatal" (got {fail!r})')
    return float(work_ms), _FAILURES[fail]
