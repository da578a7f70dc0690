"""Batch handlers: ``@batch(max_size=N, max_wait_ms=M)`` and the batcher that feeds them.

Each task of a batch holds its slot from the moment it joins the batch until its result is
written, so batches never take the agent past its capacity.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from streams.adapters.worker.errors import RetryableError
from streams.errors import ConfigError
from streams.wire import Task

F = TypeVar("F", bound=Callable[..., Any])
_BATCH_ATTRIBUTE = "__taskd_batch__"


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """How a batch handler is fed: up to ``max_size`` tasks, waiting at most ``max_wait_ms``."""

    max_size: int
    max_wait_ms: int


def batch(*, max_size: int, max_wait_ms: int) -> Callable[[F], F]:
    """Mark a handler that takes a list of tasks and returns one output per task, in order.

    A batch is handed over when ``max_size`` tasks wait or the first has waited ``max_wait_ms``.
    An exception raised ends every task of the batch; an exception *returned* in place of an
    output ends that task alone.
    """
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (max_size, max_wait_ms)):
        raise ConfigError(  # announced in the heartbeats as Avro ints
            f"@batch needs whole numbers for max_size and max_wait_ms (got {max_size!r}, "
            f"{max_wait_ms!r})"
        )
    if max_size < 1 or max_wait_ms < 0:
        raise ConfigError(
            f"@batch needs max_size >= 1 and max_wait_ms >= 0 (got {max_size}, {max_wait_ms})"
        )

    def mark(function: F) -> F:
        setattr(function, _BATCH_ATTRIBUTE, BatchSpec(max_size, max_wait_ms))
        return function

    return mark


def batch_spec(function: Callable[..., Any]) -> BatchSpec | None:
    """The ``@batch`` settings of ``function``, or None for a one-task handler."""
    spec = getattr(function, _BATCH_ATTRIBUTE, None)
    return spec if isinstance(spec, BatchSpec) else None


class Batcher:
    """Gathers tasks for one batch handler and settles each task's future from its output."""

    def __init__(self, function: Callable[..., Any], spec: BatchSpec, pool: Executor) -> None:
        self._function = function
        self._spec = spec
        self._pool = pool
        self._waiting: list[tuple[Task, asyncio.Future[Any]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, task: Task) -> Any:
        """The output of ``task`` once its batch has run (or the error that ended it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((task, future))
        if len(self._waiting) >= self._spec.max_size:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._spec.max_wait_ms / 1000, self.flush)
        return await future

    def flush(self) -> None:
        """Hand the waiting tasks to the handler now (on a full batch, a timer, or a drain)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            batch_, self._waiting = self._waiting, []
            running = asyncio.get_running_loop().create_task(self._run(batch_))
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    async def _run(self, batch_: list[tuple[Task, asyncio.Future[Any]]]) -> None:
        tasks = [task for task, _ in batch_]
        try:
            outputs = await self._call(tasks)
        except Exception as error:  # the handler's failure ends each task of the batch
            for _, future in batch_:
                future.set_exception(error)
            return
        for (_, future), output in zip(batch_, outputs, strict=True):
            if isinstance(output, BaseException):
                future.set_exception(output)
            else:
                future.set_result(output)

    async def _call(self, tasks: list[Task]) -> list[Any]:
        if inspect.iscoroutinefunction(self._function):
            outputs = await self._function(tasks)
        else:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._pool, self._function, tasks)
        if not isinstance(outputs, list | tuple) or len(outputs) != len(tasks):
            got = len(outputs) if isinstance(outputs, list | tuple) else type(outputs).__name__
            raise RetryableError(
                f"batch handler returned {got} outputs for {len(tasks)} tasks "
                "(it must return a list with one output per task)"
            )
        return list(outputs)
