"""The dead letters (``<prefix>dlq``): read a snapshot of them, select some, plan their replay.

Reading is a snapshot (``read_snapshot``): each partition up to the end it had when the read
began, so it ends even while the dispatcher keeps dead-lettering, and changes nothing on the
cluster. A record that does not decode is kept as undecodable: it is shown, never fatal.

Replaying sends a dead letter's task back to the topic of its priority with ``attempt`` 0 and the
task header ``taskd-replay`` one more than before, keeping its task id: the dispatcher's duplicate
filter keys on the task id and that count, so the replayed task is not dropped as a duplicate.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from confluent_kafka import Message

from streams.adapters.client import replay_count
from streams.adapters.kafka import codec_for, read_snapshot
from streams.core.model import REPLAY_HEADER, DeadLetterReason
from streams.errors import ConfigError, DecodeError
from streams.settings import Settings
from streams.wire import DeadLetter, Task
from streams.wire.codec import RecordCodec

READ_TIMEOUT_S = 60.0
"""Longest a read of the dead letters may take before it fails (seconds)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_AGE = re.compile(r"(\d+)\s*(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


@dataclasses.dataclass(frozen=True, slots=True)
class DlqEntry:
    """One record of the dead-letter topic: its dead letter, or why it did not decode."""

    partition: int
    offset: int
    timestamp_ms: int
    """The Kafka record's timestamp (ms since the epoch)."""
    letter: DeadLetter | None
    problem: str | None = None
    """Why the record did not decode (``letter`` is then None)."""

    @property
    def dead_at_ms(self) -> int:
        """When it was dead-lettered: the letter's ``dead_at``, else the record's timestamp."""
        return self.timestamp_ms if self.letter is None else self.letter.dead_at


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayPlan:
    """The tasks a replay sends, and the selected entries it cannot or need not send."""

    tasks: tuple[Task, ...]
    malformed: int
    """Dead letters without a task (raw bytes the dispatcher could not decode)."""
    undecodable: int
    """Records of the dead-letter topic that are not dead letters at all."""
    superseded: int
    """Older dead letters of a task also selected in a later one (only the latest is sent)."""


def read_dead_letters(
    settings: Settings,
    *,
    codec: RecordCodec | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[DlqEntry]:
    """Every record of the dead-letter topic up to its end when called, in partition order.

    Raises TopicError if the topic does not exist, KafkaError if the read fails or takes longer
    than ``timeout_s`` (seconds), RegistryError if a configured schema registry is unreachable.
    """
    decode = _decoder(codec or codec_for(settings))
    return read_snapshot(settings, settings.topics.dlq, decode, timeout_s=timeout_s)


def select(
    entries: Iterable[DlqEntry],
    *,
    reason: DeadLetterReason | None = None,
    since_ms: int | None = None,
) -> list[DlqEntry]:
    """The entries of ``reason`` dead-lettered at or after ``since_ms``, oldest first.

    With a reason, undecodable records (which have none) are left out; ``since_ms`` applies to
    them through their record timestamp.
    """
    chosen = [entry for entry in entries if _matches(entry, reason, since_ms)]
    return sorted(chosen, key=lambda entry: (entry.dead_at_ms, entry.partition, entry.offset))


def parse_since(text: str, *, now_ms: int) -> int:
    """The time (ms since the epoch) that ``text`` names: ISO-8601 (UTC unless it says
    otherwise) or an age before ``now_ms`` such as ``90s``, ``15m``, ``2h``, ``7d``, ``1w``."""
    stripped = text.strip()
    age = _AGE.fullmatch(stripped)
    if age is not None:
        return now_ms - int(age.group(1)) * _UNIT_MS[age.group(2)]
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ConfigError(
            f"since: expected an ISO-8601 time (2025-01-31T12:00:00Z) or an age such as "
            f"15m, 2h, 7d; got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def replay_task(task: Task) -> Task:
    """``task`` as a replay sends it: same id, ``attempt`` 0, REPLAY_HEADER one higher."""
    headers = {**dict(task.headers), REPLAY_HEADER: str(replay_count(task) + 1)}
    return dataclasses.replace(task, attempt=0, headers=tuple(headers.items()))


def plan_replay(entries: Sequence[DlqEntry]) -> ReplayPlan:
    """What replaying ``entries`` sends: the latest dead letter's task for each task id.

    A task dead-lettered again after a replay has several dead letters; sending each would run
    it several times, so only the one of the highest replay count (then the latest) is sent.
    """
    latest: dict[str, tuple[int, int, Task]] = {}
    malformed = undecodable = with_task = 0
    for entry in entries:
        if entry.letter is None:
            undecodable += 1
        elif entry.letter.task is None:
            malformed += 1
        else:
            with_task += 1
            task = entry.letter.task
            rank = (replay_count(task), entry.dead_at_ms, task)
            if task.task_id not in latest or rank[:2] >= latest[task.task_id][:2]:
                latest[task.task_id] = rank
    tasks = tuple(replay_task(task) for _, _, task in latest.values())
    return ReplayPlan(tasks, malformed, undecodable, superseded=with_task - len(tasks))


def _matches(entry: DlqEntry, reason: DeadLetterReason | None, since_ms: int | None) -> bool:
    if reason is not None and (entry.letter is None or entry.letter.reason is not reason):
        return False
    return since_ms is None or entry.dead_at_ms >= since_ms


def _decoder(codec: RecordCodec) -> Callable[[Message], DlqEntry]:
    def decode(message: Message) -> DlqEntry:
        partition, offset = message.partition() or 0, message.offset() or 0
        timestamp_ms = message.timestamp()[1]
        value = message.value()
        if not value:
            return DlqEntry(partition, offset, timestamp_ms, None, "empty record")
        try:
            return DlqEntry(partition, offset, timestamp_ms, codec.decode(value, DeadLetter))
        except DecodeError as error:
            return DlqEntry(partition, offset, timestamp_ms, None, str(error))

    return decode
