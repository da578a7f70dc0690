"""Task handlers: loaded from ``"module:function"``, mapped per task type, invoked by kind.

A handler takes a :class:`~streams.wire.Task` and returns its output. Async handlers run on the
event loop, sync ones in the agent's thread pool (one thread per slot), and ``@batch`` ones get
a list of tasks at once (see :mod:`streams.adapters.worker.batching`). A sync handler that
returns an awaitable has it awaited on the loop (callable objects with an async ``__call__``).
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from streams.adapters.worker.batching import Batcher, BatchSpec, batch_spec
from streams.adapters.worker.config import AgentConfig, HandlerRef
from streams.errors import ConfigError
from streams.wire import Task

Invoker = Callable[[Task], Awaitable[Any]]
"""A handler made awaitable whatever its kind: the task in, its output (or an error) out."""


def load_handler(ref: HandlerRef) -> Callable[..., Any]:
    """The callable ``ref`` names (``"module:function"``); ConfigError saying what is wrong."""
    if callable(ref):
        return ref
    function = load_object(ref, "handler", "function", example="streams.examples:work")
    if not callable(function):
        raise ConfigError(f"handler {ref!r}: {ref.partition(':')[2]!r} is not a function")
    return function


def load_object(ref: str, what: str, noun: str, *, example: str) -> object:
    """The object ``"module:name"`` names, a ``noun``; ConfigError (about ``what``) saying
    what is wrong."""
    module_name, _, name = ref.partition(":")
    if not module_name or not name:
        raise ConfigError(f"{what} {ref!r}: expected module:{noun}, e.g. {example}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any error of the user's module at import time
        raise ConfigError(
            f"{what} {ref!r}: cannot import module {module_name!r}: {error}"
        ) from error
    found = getattr(module, name, None)
    if found is None:
        raise ConfigError(f"{what} {ref!r}: module {module_name!r} has no {noun} {name!r}")
    return found


def parse_handler_options(options: list[str]) -> tuple[str | None, dict[str, str]]:
    """``--handler`` values: ``module:function`` (any type) or ``TYPE=module:function``.

    Returns the default handler and the handlers by type; ConfigError on a repeat.
    """
    default: str | None = None
    by_type: dict[str, str] = {}
    for option in options:
        task_type, sep, ref = option.rpartition("=")
        if not sep:
            if default is not None:
                raise ConfigError(f"--handler: two handlers for every type ({default}, {ref})")
            default = ref
        elif not task_type or task_type in by_type:
            raise ConfigError(f"--handler {option!r}: the type is empty or given twice")
        else:
            by_type[task_type] = ref
    return default, by_type


class Handlers:
    """The handler of each task type, loaded once (ConfigError for a bad one)."""

    def __init__(self, config: AgentConfig) -> None:
        self.default = None if config.handler is None else load_handler(config.handler)
        self.by_type: Mapping[str, Callable[..., Any]] = {
            task_type: load_handler(ref) for task_type, ref in config.handlers.items()
        }

    def task_types(self) -> tuple[str, ...] | None:
        """The types there is a handler for, sorted; None with a default handler (every type)."""
        return None if self.default is not None else tuple(sorted(self.by_type))

    def batch_specs(self) -> dict[str, BatchSpec]:
        """The ``@batch`` settings of each type's batch handler (a default handler names no
        type, so it is announced for none), for the dispatcher to group by."""
        specs = {task_type: batch_spec(function) for task_type, function in self.by_type.items()}
        return {task_type: spec for task_type, spec in sorted(specs.items()) if spec is not None}

    def for_type(self, task_type: str) -> Callable[..., Any] | None:
        """The handler of ``task_type``, else the default one, else None."""
        return self.by_type.get(task_type, self.default)


class Invokers:
    """The handlers bound to a thread pool: one invoker per handler, one batcher per batch one."""

    def __init__(self, handlers: Handlers, pool: Executor) -> None:
        self._handlers = handlers
        self._batchers: dict[int, Batcher] = {}
        self._bound: dict[int, Invoker] = {}
        self._handlers_on_loop = frozenset(
            function
            for function in [handlers.default, *handlers.by_type.values()]
            if function is not None
            and batch_spec(function) is None
            and inspect.iscoroutinefunction(function)
        )
        for function in [handlers.default, *handlers.by_type.values()]:
            if function is not None and id(function) not in self._bound:
                self._bound[id(function)] = self._bind(function, pool)

    def for_type(self, task_type: str) -> Invoker | None:
        """How to run a task of ``task_type``; None when no handler takes it."""
        function = self._handlers.for_type(task_type)
        return None if function is None else self._bound[id(function)]

    def flush(self) -> None:
        """Hand every waiting batch to its handler now (a drain does not wait for the timers)."""
        for batcher in self._batchers.values():
            batcher.flush()

    def flush_type(self, task_type: str) -> None:
        """Hand the waiting batch of ``task_type``'s batch handler to it now, if it has one."""
        invoke = self.for_type(task_type)
        if isinstance(invoke, Batcher):
            invoke.flush()

    def on_loop(self, invoke: Invoker) -> bool:
        """Whether ``invoke`` runs its handler on the event loop (an ``async`` handler, which a
        stop can cancel), not in a thread or a batch (which a stop only flags: the slot stays
        taken until the function returns)."""
        return invoke in self._handlers_on_loop

    def _bind(self, function: Callable[..., Any], pool: Executor) -> Invoker:
        spec = batch_spec(function)
        if spec is None:
            return one_task_invoker(function, pool)
        batcher = self._batchers[id(function)] = Batcher(function, spec, pool)
        return batcher


def one_task_invoker(function: Callable[..., Any], pool: Executor) -> Invoker:
    """Await ``function(task)``: on the loop if it is async, else in ``pool``."""
    if inspect.iscoroutinefunction(function):
        return function

    async def invoke(task: Task) -> Any:
        # the handler's thread sees this task's context: taskd.cancelled() reads it there
        context = contextvars.copy_context()
        value = await asyncio.get_running_loop().run_in_executor(pool, context.run, function, task)
        return await value if inspect.isawaitable(value) else value

    return invoke
