"""The application API, in the manner of Celery and Dramatiq, on Task Distributor's guarantees.

```python
import taskd

app = taskd.App()                                   # settings from TASKD_* and TASKD_CONFIG

@app.task("resize", priority=1)
def resize(w: int, h: int) -> dict:
    return {"pixels": w * h}

handle = resize.submit(w=64, h=48)                  # the task's handle, at once
print(handle.result(timeout=30))                    # {'pixels': 3072}
```

Agents run every task of the app with ``taskd agent --app tasks:app --capacity 4``.

The arguments travel as one JSON object (``{"w": 64, "h": 48}``): checked against the
function's signature when submitted, bound again when run, so a kcat producer can send the same
object. The return value comes back as JSON. A task declared ``payload="bytes"`` takes and
returns raw bytes instead. In a task, raise :class:`Retry` for a transient failure (retried
while attempts remain) and :class:`Fail` for a final one (straight to the dead letters); any
other exception counts as transient.

The app's client is made on the first submit and closed (every task flushed to the broker) by
``app.close()``, by leaving ``with app:``, or when the process exits.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import functools
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Literal, ParamSpec, Self, TypeVar

from streams.adapters.client import TaskClient
from streams.adapters.replies import TaskHandle
from streams.adapters.worker.errors import FatalError, RetryableError
from streams.errors import ConfigError, EncodeError
from streams.settings import Settings, load_settings
from streams.wire import Task, TaskOutcome
from streams.wire.records import TaskOptions

P = ParamSpec("P")
R = TypeVar("R")

Retry = RetryableError
"""Raise in a task for a transient failure: the task is retried while attempts remain."""
Fail = FatalError
"""Raise in a task for a final failure: the task goes to the dead letters (FAILED)."""

PayloadKind = Literal["json", "bytes"]
Duration = float | datetime.timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class TaskDefaults:
    """How an app's task is sent unless ``options`` says otherwise."""

    priority: int | None = None
    """None: the middle level (``priority_levels // 2``)."""
    tenant: str = "default"
    skills: tuple[str, ...] = ()
    zone: str | None = None
    ttl: Duration | None = None
    deadline: datetime.datetime | None = None
    max_attempts: int = 3
    affinity_key: str | None = None
    target_agent: str | None = None
    cost: float | None = None
    ordering_key: str | None = None
    """Tasks sharing it run one at a time, in the order sent (``docs/ordering.md``)."""


class App:
    """A set of task functions sharing settings and one client (see the module docstring)."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        """``settings``, or else ``load_settings(**overrides)`` (``TASKD_*``, ``TASKD_CONFIG``)."""
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.tasks: dict[str, AppTask[..., Any]] = {}
        self._client: TaskClient | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def task(
        self,
        name: str | None = None,
        *,
        payload: PayloadKind = "json",
        priority: int | None = None,
        tenant: str = "default",
        skills: Iterable[str] = (),
        zone: str | None = None,
        ttl: Duration | None = None,
        max_attempts: int = 3,
        cost: float | None = None,
    ) -> Callable[[Callable[P, R]], AppTask[P, R]]:
        """Declare a task: ``name`` (default: the function's) is its type on the wire."""
        defaults = TaskDefaults(
            priority=priority,
            tenant=tenant,
            skills=tuple(skills),
            zone=zone,
            ttl=ttl,
            max_attempts=max_attempts,
            cost=cost,
        )

        def declare(function: Callable[P, R]) -> AppTask[P, R]:
            task_type = name or function.__name__
            if task_type in self.tasks:
                raise ConfigError(f"task {task_type!r} is declared twice in this app")
            declared = AppTask(self, task_type, function, defaults, payload)
            self.tasks[task_type] = declared
            return declared

        return declare

    def handlers(self) -> dict[str, Callable[[Task], Any]]:
        """What an agent runs: one handler per task type of the app."""
        return {task_type: task.handler for task_type, task in self.tasks.items()}

    @property
    def client(self) -> TaskClient:
        """The app's client (results on), made on first use."""
        with self._lock:
            if self._client is None:
                self._client = TaskClient(self.settings, results=True)
            return self._client

    def wait(
        self, handles: Iterable[TaskHandle[Any]], timeout: float | None = None
    ) -> list[TaskOutcome]:
        """The outcomes of ``handles``, in order, once all have ended (ResultTimeoutError)."""
        return self.client.wait(handles, timeout)

    def close(self) -> None:
        """Flush every task submitted to the broker (DeliveryError if some failed) and stop
        reading results; the next submit makes a new client."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AppTask(Generic[P, R]):
    """A task function of an app: call it to run it here, ``submit`` it to run it on an agent."""

    def __init__(
        self,
        app: App,
        task_type: str,
        function: Callable[P, R],
        defaults: TaskDefaults,
        payload: PayloadKind,
    ) -> None:
        if payload not in ("json", "bytes"):
            raise ConfigError(f"task {task_type!r}: payload must be 'json' or 'bytes'")
        self.app = app
        self.type = task_type
        self.function = function
        self.defaults = defaults
        self.payload = payload
        self.signature = inspect.signature(function)
        self.handler = _handler(self)
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, as a plain call."""
        return self.function(*args, **kwargs)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Send the task with these arguments; its handle (``result()``, ``await``).

        EncodeError at once if the arguments do not fit the function or are not JSON."""
        sent = self.app.client.submit(self._task(encode_arguments(self, args, kwargs)))
        return TaskHandle(sent.task, sent.waits, self._decode)

    def options(self, **overrides: Any) -> AppTask[P, R]:
        """This task with other defaults for what it sends: ``priority``, ``tenant``,
        ``skills``, ``zone``, ``ttl``, ``deadline``, ``max_attempts``, ``affinity_key``,
        ``target_agent``, ``cost``, ``ordering_key`` (``.options(ordering_key=account)``:
        one account's tasks run one at a time, in order)."""
        try:
            defaults = dataclasses.replace(self.defaults, **overrides)
        except TypeError as error:
            raise ConfigError(f"task {self.type!r}: {error}") from error
        return AppTask(self.app, self.type, self.function, defaults, self.payload)

    def _task(self, payload: bytes) -> Task:
        settings = self.app.settings
        d = self.defaults
        priority = settings.priority_levels // 2 if d.priority is None else d.priority
        options: TaskOptions = {
            "tenant": d.tenant,
            "required_skills": d.skills,
            "zone": d.zone,
            "max_attempts": d.max_attempts,
            "affinity_key": d.affinity_key,
            "target_agent": d.target_agent,
            "cost": d.cost,
            "ordering_key": d.ordering_key,
            "ttl_ms": None if d.ttl is None else _ms(d.ttl),
            "deadline": None if d.deadline is None else int(d.deadline.timestamp() * 1000),
        }
        now_ms = time.time_ns() // 1_000_000
        return Task.new(
            type=self.type, priority=priority, now_ms=now_ms, payload=payload, **options
        )

    def _decode(self, output: bytes | None) -> R:
        if self.payload == "bytes":
            return output  # type: ignore[return-value]
        return None if output is None else json.loads(output)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<task {self.type!r} of {self.function.__module__}.{self.function.__qualname__}>"


def encode_arguments(
    task: AppTask[Any, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> bytes:
    """The payload of a call: raw bytes (``payload="bytes"``), else the JSON object of the
    arguments by name; EncodeError if they do not fit the function or are not JSON."""
    if task.payload == "bytes":
        if len(args) != 1 or kwargs or not isinstance(args[0], bytes | bytearray):
            raise EncodeError(f"task {task.type!r} takes one bytes argument")
        return bytes(args[0])
    try:
        bound = task.signature.bind(*args, **kwargs)
    except TypeError as error:
        raise EncodeError(f"task {task.type!r}: {error}") from error
    try:
        return json.dumps(bound.arguments, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise EncodeError(f"task {task.type!r}: arguments are not JSON: {error}") from error


def call_arguments(task: AppTask[Any, Any], payload: bytes) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments a payload holds, bound to the function's
    signature; Fail (a payload that does not fit never will) otherwise."""
    try:
        named = json.loads(payload) if payload.strip() else {}
    except ValueError as error:
        raise Fail(f"task {task.type!r}: the payload is not JSON: {error}") from error
    if not isinstance(named, dict):
        raise Fail(f"task {task.type!r}: the payload must be a JSON object of arguments")
    parameters = task.signature.parameters
    unknown = sorted(set(named) - set(parameters))
    if unknown:
        raise Fail(f"task {task.type!r}: unexpected argument(s) {', '.join(unknown)}")
    ordered = {name: named[name] for name in parameters if name in named}  # signature order
    bound = inspect.BoundArguments(task.signature, ordered)
    try:
        args, kwargs = list(bound.args), dict(bound.kwargs)
        task.signature.bind(*args, **kwargs)
    except TypeError as error:  # a missing argument, or *args / **kwargs of the wrong kind
        raise Fail(f"task {task.type!r}: {error}") from error
    return args, kwargs


def _handler(task: AppTask[Any, Any]) -> Callable[[Task], Any]:
    """The agent's handler of ``task``: payload in, output bytes out; async if it is."""
    function = task.function
    if task.payload == "bytes":
        return lambda wire: function(wire.payload)

    if inspect.iscoroutinefunction(function):

        async def run_async(wire: Task) -> bytes:
            args, kwargs = call_arguments(task, wire.payload)
            return _output(task, await function(*args, **kwargs))

        return run_async

    def run(wire: Task) -> bytes:
        args, kwargs = call_arguments(task, wire.payload)
        return _output(task, function(*args, **kwargs))

    return run


def _output(task: AppTask[Any, Any], value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise Fail(f"task {task.type!r} returned a value that is not JSON: {error}") from error


def _ms(duration: Duration) -> int:
    seconds = duration.total_seconds() if isinstance(duration, datetime.timedelta) else duration
    return int(seconds * 1000)
