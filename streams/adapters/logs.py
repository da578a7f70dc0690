"""Logs an operator can use: one set-up for every ``taskd`` command, and rate-limited logging
for what comes in floods.

:func:`setup_logging` is the only place that configures logging (the root logger, on stderr):
``text`` (``2026-12-07 10:00:00,123 WARNING streams.x message``, a traceback on the lines
after) or ``json`` (one object per line: ``time``, ``level``, ``logger``, ``message``,
``exception`` when there is one, and the record's extra fields). Neither ever writes a terminal
escape sequence: text carried in from outside (a handler's error, an id read from Kafka) may
hold control characters, and the text format shows each as ``\\x1b``, the JSON format as
``\\u001b``.

:class:`RateLimitedLog` logs the first ``burst`` messages of each key per ``interval_s`` in
full and counts the rest; once the interval is over, one summary line per key says how many were
suppressed. :func:`flush_summaries` writes the summaries that are due (the dispatcher and the
agents call it every second, and with ``force`` when they stop). :func:`log_dead_letter` is the
rate-limited line of a dead letter.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from streams.errors import ConfigError

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters but tab and newline: ESC (\\x1b) starts every terminal escape sequence,
CR overwrites a line, U+009B is an 8-bit CSI."""
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
"""A LogRecord's own attributes: everything else on a record came in through ``extra``."""


def plain(text: str) -> str:
    """``text`` with each control character but tab and newline shown as ``\\xNN``."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class TextFormatter(logging.Formatter):
    """``time level logger message``, the traceback below; control characters escaped."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return plain(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, ASCII only (so no escape sequence either)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry.setdefault(key, value)
        return json.dumps(entry, default=_jsonable).replace("\x7f", "\\u007f")


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, str | int):
        return enum_value
    return str(value)


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``setup_logging`` installs (so a second call replaces it)."""


def setup_logging(
    level: str = "info", log_format: str = "text", stream: IO[str] | None = None
) -> None:
    """Log at ``level`` and above to ``stream`` (stderr) in ``log_format`` (``text``, ``json``);
    ConfigError for an unknown level or format. Called once by each command; calling it again
    replaces what the last call set up."""
    level, log_format = level.lower(), log_format.lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)


# --- rate limiting ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0
    level: int = logging.NOTSET
    """The highest level suppressed: the summary's level."""


_limiters: weakref.WeakSet[RateLimitedLog] = weakref.WeakSet()


class RateLimitedLog:
    """Logs to ``logger`` the first ``burst`` messages of each key per ``interval_s`` in full;
    the rest are counted, and one summary per key and interval says so::

        handler failures resize ValueError: suppressed 1,204 more in the last 60 s

    The summary is written by the first message of the key after the interval, or by
    :meth:`flush` (:func:`flush_summaries`), at the highest level suppressed. At most
    ``max_keys`` keys are tracked; past that, the oldest intervals are closed early.
    Thread-safe.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        burst: int = 5,
        interval_s: float = 60.0,
        max_keys: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or interval_s <= 0 or max_keys < 1:
            raise ConfigError("a rate-limited log needs burst >= 1, interval_s > 0, max_keys >= 1")
        self.logger = logger
        self.what = what
        """What is counted, for the summary: e.g. ``handler failures``."""
        self.burst = burst
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        _limiters.add(self)

    def log(
        self,
        level: int,
        key: str,
        msg: str,
        *args: object,
        exc_info: BaseException | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        """Log ``msg % args`` unless ``key`` had its ``burst`` in this interval; whether it was
        logged."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.started >= self.interval_s:
                self._close(key, window, now)
                window = None
            if window is None:
                if len(self._windows) >= self.max_keys:
                    oldest = next(iter(self._windows))
                    self._close(oldest, self._windows[oldest], now)
                window = self._windows[key] = _Window(now)
            if window.logged >= self.burst:
                window.suppressed += 1
                window.level = max(window.level, level)
                return False
            window.logged += 1
        self.logger.log(level, msg, *args, exc_info=exc_info, extra=extra, stacklevel=2)
        return True

    def flush(self, *, force: bool = False) -> int:
        """Write the summary of each key whose interval is over (``force``: of every key, as
        when stopping); how many summaries were written."""
        now = self._clock()
        written = 0
        with self._lock:
            for key, window in list(self._windows.items()):
                if force or now - window.started >= self.interval_s:
                    written += self._close(key, window, now)
        return written

    def _close(self, key: str, window: _Window, now: float) -> int:
        del self._windows[key]
        if not window.suppressed:
            return 0
        seconds = min(now - window.started, self.interval_s)
        self.logger.log(
            window.level,
            "%s %s: suppressed %s more in the last %.0f s",
            self.what,
            key,
            f"{window.suppressed:,}",
            max(seconds, 1.0),
            extra={"suppressed": window.suppressed, "key": key},
        )
        return 1


def flush_summaries(*, force: bool = False) -> int:
    """:meth:`RateLimitedLog.flush` of every rate-limited log of this process."""
    return sum(limiter.flush(force=force) for limiter in list(_limiters))


# --- dead letters -------------------------------------------------------------------------------

DEAD_LETTER_BURST = 10
"""Dead letters logged in full per reason per minute (the rest are counted)."""
_ERROR_CHARS = 500
_dead_letters: dict[str, RateLimitedLog] = {}


def log_dead_letter(
    logger: logging.Logger,
    task_id: str,
    reason: object,
    error: str | None,
    *,
    task_type: str | None = None,
    attempts: int | None = None,
) -> bool:
    """Log that ``task_id`` went to the dead letters, at WARNING, rate-limited per reason
    (``DEAD_LETTER_BURST`` a minute in full, then one summary); whether it was logged.

    ``reason``: a ``DeadLetterReason`` or its name; ``error``: the dead letter's error text
    (shortened to 500 characters here, the record keeps it whole)::

        dead letter: task t-17 (type resize) FAILED after 1 attempt(s): disk full

    The JSON format adds the fields ``task_id``, ``reason``, ``error``, ``task_type``,
    ``attempts``.
    """
    why = str(getattr(reason, "value", reason))
    limiter = _dead_letters.get(logger.name)
    if limiter is None:
        limiter = _dead_letters[logger.name] = RateLimitedLog(
            logger, "dead letters", burst=DEAD_LETTER_BURST
        )
    text = error or ""
    if len(text) > _ERROR_CHARS:
        text = text[:_ERROR_CHARS] + "..."
    kind = f" (type {task_type})" if task_type else ""
    after = f" after {attempts} attempt(s)" if attempts is not None else ""
    return limiter.log(
        logging.WARNING,
        why,
        "dead letter: task %s%s %s%s: %s",
        task_id,
        kind,
        why,
        after,
        text,
        extra={
            "task_id": task_id,
            "reason": why,
            "error": error,
            "task_type": task_type,
            "attempts": attempts,
        },
    )
