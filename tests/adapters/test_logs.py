"""``streams.adapters.logs``: the log line formats and the rate limiter, as an operator reads
them (what reaches the stream), with a clock of the test's own."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from streams.adapters.logs import (
    DEAD_LETTER_BURST,
    RateLimitedLog,
    flush_summaries,
    log_dead_letter,
    setup_logging,
)
from streams.core.model import DeadLetterReason
from streams.errors import ConfigError


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """What the root logger writes, once ``setup_logging`` pointed it here."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    yield out
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _failing() -> None:
    raise ValueError("\x1b[31mred\x1b[0m text\r")


def test_text_lines_carry_the_traceback_and_no_escape_sequence(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    log = logging.getLogger("taskd.test")
    log.debug("not shown at info")
    try:
        _failing()
    except ValueError:
        log.exception("agent \x1b]0;title\x07 failed")
    text = stream.getvalue()
    assert "not shown" not in text
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    first = text.splitlines()[0]
    assert first.endswith("ERROR taskd.test agent \\x1b]0;title\\x07 failed")
    assert "Traceback (most recent call last):" in text
    assert 'raise ValueError("\\x1b[31mred\\x1b[0m text\\r")' in text
    assert "ValueError: \\x1b[31mred\\x1b[0m text\\x0d" in text


def test_json_lines_parse_and_carry_the_exception_and_extra_fields(stream: io.StringIO) -> None:
    setup_logging("DEBUG", "JSON", stream)
    log = logging.getLogger("taskd.test")
    log.debug("plain %s", "é", extra={"task_id": "t1", "skills": frozenset({"b", "a"})})
    try:
        _failing()
    except ValueError:
        log.warning("failed \x1b[1m", exc_info=True, extra={"attempt": 2})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "\x1b" not in stream.getvalue()
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "DEBUG" and first["logger"] == "taskd.test"
    assert (first["message"], first["task_id"], first["skills"]) == ("plain é", "t1", ["a", "b"])
    assert first["time"].endswith("+00:00") and "exception" not in first
    assert second["message"] == "failed \x1b[1m"  # escaped in the line, whole once parsed
    assert second["attempt"] == 2
    assert second["exception"].startswith("Traceback (most recent call last):")
    assert second["exception"].endswith("ValueError: \x1b[31mred\x1b[0m text\r")


def test_a_second_setup_replaces_the_first(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    setup_logging("warning", "text", stream)
    logging.getLogger("taskd.test").info("hidden")
    logging.getLogger("taskd.test").warning("shown")
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[0]]
    assert stream.getvalue().strip().endswith("WARNING taskd.test shown")


def test_unknown_levels_and_formats_are_refused() -> None:
    with pytest.raises(ConfigError, match="log format 'xml'"):
        setup_logging("info", "xml")
    with pytest.raises(ConfigError, match="log level 'loud'"):
        setup_logging("loud", "text")


def test_the_first_burst_per_key_is_logged_the_rest_summarised_once_per_interval(
    stream: io.StringIO,
) -> None:
    setup_logging("info", "text", stream)
    clock = Clock()
    limited = RateLimitedLog(
        logging.getLogger("taskd.limited"), "failures", burst=2, interval_s=60, clock=clock
    )
    logged = [limited.log(logging.WARNING, "a", "a %d", i) for i in range(5)]
    logged.append(limited.log(logging.ERROR, "a", "a fatal"))
    logged.append(limited.log(logging.WARNING, "b", "b 0"))
    assert logged == [True, True, False, False, False, False, True]
    assert limited.flush() == 0  # the interval is not over
    clock.now += 60
    assert limited.flush() == 1
    assert limited.flush(force=True) == 0  # nothing left to say
    clock.now += 1
    assert limited.log(logging.WARNING, "a", "a again")
    lines = [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()]
    assert lines == [
        "WARNING taskd.limited a 0",
        "WARNING taskd.limited a 1",
        "WARNING taskd.limited b 0",
        "ERROR taskd.limited failures a: suppressed 4 more in the last 60 s",
        "WARNING taskd.limited a again",
    ]


def test_a_summary_is_written_by_the_next_message_of_its_key_or_when_forced(
    stream: io.StringIO,
) -> None:
    setup_logging("info", "json", stream)
    clock = Clock()
    limited = RateLimitedLog(
        logging.getLogger("taskd.limited"), "failures", burst=1, interval_s=10, clock=clock
    )
    for _ in range(3):
        limited.log(logging.WARNING, "k", "first window")
    clock.now += 11
    limited.log(logging.WARNING, "k", "second window")
    limited.log(logging.WARNING, "k", "second window, suppressed")
    clock.now += 2
    assert flush_summaries(force=True) >= 1
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["message"], e.get("suppressed")) for e in entries] == [
        ("first window", None),
        ("failures k: suppressed 2 more in the last 10 s", 2),
        ("second window", None),
        ("failures k: suppressed 1 more in the last 2 s", 1),
    ]


def test_the_oldest_key_is_summarised_when_too_many_are_tracked(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    limited = RateLimitedLog(
        logging.getLogger("taskd.limited"), "x", burst=1, max_keys=2, clock=Clock()
    )
    for key in ("a", "a", "b", "c"):
        limited.log(logging.WARNING, key, "%s", key)
    assert stream.getvalue().splitlines()[-2].endswith("x a: suppressed 1 more in the last 1 s")


def test_dead_letters_are_logged_per_reason_with_their_fields_then_summarised(
    stream: io.StringIO,
) -> None:
    setup_logging("info", "json", stream)
    log = logging.getLogger("taskd.test.dead_letters")
    for i in range(DEAD_LETTER_BURST + 3):
        log_dead_letter(
            log, f"t{i}", DeadLetterReason.FAILED, "disk full", task_type="resize", attempts=1
        )
    assert log_dead_letter(log, "bad", "MALFORMED", "x" * 600)
    flush_summaries(force=True)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entries[0]["message"] == (
        "dead letter: task t0 (type resize) FAILED after 1 attempt(s): disk full"
    )
    assert entries[0]["level"] == "WARNING"
    assert {k: entries[0][k] for k in ("task_id", "reason", "task_type", "attempts")} == {
        "task_id": "t0",
        "reason": "FAILED",
        "task_type": "resize",
        "attempts": 1,
    }
    logged = [e["task_id"] for e in entries if "task_id" in e]
    assert logged == [f"t{i}" for i in range(DEAD_LETTER_BURST)] + ["bad"]
    malformed = entries[DEAD_LETTER_BURST]
    assert malformed["message"] == "dead letter: task bad MALFORMED: " + "x" * 500 + "..."
    assert malformed["error"] == "x" * 600
    assert entries[-1]["message"] == "dead letters FAILED: suppressed 3 more in the last 1 s"
