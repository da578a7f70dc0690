"""``taskd submit [FILE|-]``: submit tasks from JSON lines, one task per line.

Each line is the JSON object the task topics accept (``parse_task_json``); a line's own priority
and type win over ``--priority`` and ``--type``. A malformed line is reported on stderr with its
line number and skipped; the rest are sent. Exit status 1 if a line was malformed or a delivery
failed, else 0.

With ``--wait``, the command then waits for each task to end and prints its outcome as one JSON
line on stdout as it comes (the summary goes to stderr); exit status 1 also if a task failed or
had not ended within ``--wait-timeout``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.adapters.client import SubmitReport, TaskClient
from streams.adapters.kafka import require_broker
from streams.adapters.tail import record_json
from streams.cli.context import settings_of
from streams.errors import DecodeError, ResultTimeoutError
from streams.wire import Task, parse_task_json

_PLAIN_EVERY_S = 5.0
"""Without a terminal, a progress line at most this often (seconds)."""


@dataclass
class _Reading:
    """Lines read so far: tasks (non-blank lines) and how many of them were malformed."""

    read: int = 0
    malformed: int = 0


def submit(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="JSON lines file; '-' or nothing: stdin")
    ] = "-",
    priority: Annotated[
        int | None, typer.Option("--priority", "-p", help="Priority of lines that state none")
    ] = None,
    task_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Type of lines that state none")
    ] = None,
    json_encoding: Annotated[
        bool, typer.Option("--json-encoding", help="Send the JSON form instead of Avro")
    ] = False,
    timeout_s: Annotated[
        float,
        typer.Option("--timeout", min=1.0, help="Seconds a task may wait for the broker's ack"),
    ] = 120.0,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for each task to end; print its outcome (JSON)")
    ] = False,
    wait_timeout_s: Annotated[
        float,
        typer.Option("--wait-timeout", min=0.1, help="Seconds to wait for the outcomes (--wait)"),
    ] = 300.0,
) -> None:
    """Submit tasks from JSON lines (one task per line) to the topics of their priority."""
    settings = settings_of(ctx)
    if priority is not None and not 0 <= priority < settings.priority_levels:
        raise typer.BadParameter(
            f"must be in 0..{settings.priority_levels - 1}", param_hint="--priority"
        )
    err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
    reading = _Reading()
    require_broker(settings)  # no broker: one line within the connect timeout
    client = TaskClient(
        settings,
        producer_config={"message.timeout.ms": int(timeout_s * 1000)},
        encoding="json" if json_encoding else "avro",
        results=wait,
    )
    sent: list[str] = []
    with _open(source) as lines, client, _display(err, reading) as show:
        tasks = _tasks(lines, reading, settings.priority_levels, priority, task_type, err.print)
        report = client.submit_many(_noted(tasks, sent), show)
        failed = _finish(reading, report, err, err if wait else None)
        if wait:  # the tasks that did go out are waited for, whatever failed before them
            failed += _print_outcomes(client, sent, wait_timeout_s, err)
    if failed:
        raise typer.Exit(1)


def _noted(tasks: Iterable[Task], sent: list[str]) -> Iterator[Task]:
    for task in tasks:
        sent.append(task.task_id)
        yield task


def _print_outcomes(client: TaskClient, task_ids: list[str], timeout_s: float, err: Console) -> int:
    """Each task's outcome as a JSON line as it ends; how many did not succeed, have no
    outcome (never delivered) or are still out after ``timeout_s``."""
    failed = 0
    no_outcome: list[BaseException] = []
    try:
        for outcome in client.as_completed(task_ids, timeout_s, no_outcome=no_outcome):
            failed += not outcome.succeeded
            typer.echo(json.dumps(record_json(outcome), ensure_ascii=False))
    except ResultTimeoutError as error:
        err.print(str(error))
        return failed + len(no_outcome) + error.pending
    if failed:
        err.print(f"{failed} of {len(task_ids)} task(s) did not succeed")
    if no_outcome:
        err.print(f"{len(no_outcome)} task(s) have no outcome: {no_outcome[0]}")
    return failed + len(no_outcome)


def _tasks(
    lines: Iterable[bytes],
    reading: _Reading,
    levels: int,
    priority: int | None,
    task_type: str | None,
    complain: Callable[[str], None],
) -> Iterator[Task]:
    """The valid tasks of ``lines``; a malformed line is counted and reported, not fatal."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        reading.read += 1
        now_ms = time.time_ns() // 1_000_000
        try:
            yield parse_task_json(
                _with_type(line, task_type), now_ms=now_ms, levels=levels, topic_priority=priority
            )
        except DecodeError as error:
            reading.malformed += 1
            complain(f"line {number}: {error}")


def _with_type(line: bytes, task_type: str | None) -> bytes:
    """``line`` with ``"type": task_type`` added if it is a JSON object without a type."""
    if task_type is None:
        return line
    try:
        loaded = json.loads(line)
    except (ValueError, RecursionError):
        return line  # parse_task_json says what is wrong with it
    if not isinstance(loaded, dict) or "type" in loaded:
        return line
    rest = line.strip()[1:]
    separator = b"," if loaded else b""
    return b'{"type":' + json.dumps(task_type).encode() + separator + rest


@contextmanager
def _open(source: str) -> Iterator[BinaryIO]:
    if source == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = Path(source).open("rb")  # noqa: SIM115 (closed below; only open() is guarded)
    except OSError as error:
        raise typer.BadParameter(f"cannot read {source}: {error.strerror}") from error
    with handle:
        yield handle


@contextmanager
def _display(err: Console, reading: _Reading) -> Iterator[Callable[[SubmitReport], None]]:
    """A progress callback: a live bar on a terminal, else a plain line now and then."""
    if not err.is_terminal:
        yield _plain_progress(err, reading)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=False) as progress:
        bar = progress.add_task("confirmed", total=0)

        def show(report: SubmitReport) -> None:
            valid = reading.read - reading.malformed
            text = f"read {reading.read:,} · confirmed"
            progress.update(bar, completed=report.delivered, total=valid, description=text)

        yield show


def _plain_progress(err: Console, reading: _Reading) -> Callable[[SubmitReport], None]:
    last = [time.monotonic()]

    def show(report: SubmitReport) -> None:
        if time.monotonic() - last[0] >= _PLAIN_EVERY_S:
            last[0] = time.monotonic()
            err.print(f"read {reading.read}, confirmed {report.delivered}, failed {report.failed}")

    return show


def _finish(reading: _Reading, report: SubmitReport, err: Console, summary: Console | None) -> int:
    """The summary (on ``summary``, else stdout) and the problems on stderr; how many lines or
    tasks failed."""
    say = typer.echo if summary is None else summary.print
    if reading.read == 0:
        say("no tasks read")
        return 0
    failed = reading.malformed + report.failed + report.unconfirmed
    say(f"submitted {report.delivered} tasks ({failed} failed)")
    if reading.malformed:
        err.print(f"{reading.malformed} malformed line(s) skipped")
    if report.failed:
        err.print(f"{report.failed} delivery(ies) failed; first error: {report.first_error}")
    if report.unconfirmed:
        err.print(f"{report.unconfirmed} task(s) not confirmed by the broker in time")
    return failed
