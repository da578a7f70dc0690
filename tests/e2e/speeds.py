"""Agent handlers of different speeds for the pipeline tests: each works a fixed time per task
whatever its payload asks, so agents of one run differ in speed as well as in capacity."""

from __future__ import annotations

import asyncio

from streams.worker import Task


async def _work(task: Task, seconds: float) -> dict[str, str]:
    await asyncio.sleep(seconds)
    return {"task_id": task.task_id}


async def fast(task: Task) -> dict[str, str]:
    return await _work(task, 0.0005)


async def steady(task: Task) -> dict[str, str]:
    return await _work(task, 0.002)


async def slow(task: Task) -> dict[str, str]:
    return await _work(task, 0.008)
