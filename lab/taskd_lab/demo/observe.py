"""What a run did, read from Kafka as it happens: the ``dispatch``, ``results`` and ``dlq`` topics.

A background thread reads the three topics from their beginning (no consumer group: it only
watches) and keeps every record for the figures, plus running tallies for the live view. The
tasks themselves are told to it by the submitter (``submitted``), so it knows each one's
priority and submission time before any record about it arrives.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as ClientError

from streams.adapters.kafka import codec_for
from streams.errors import KafkaError, TaskdError
from streams.settings import Settings
from streams.wire import (
    Assignment,
    AssignmentBatch,
    DeadLetter,
    ResultBatch,
    Task,
    TaskResult,
    TaskStatus,
)
from streams.wire.codec import RecordCodec

_POLL_S = 0.2
_BATCH = 2_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run so far, for the live view."""

    submitted: int
    distributed: int
    """Assignments sent to agents (failovers and retries count again)."""
    completed: int
    dead: Counter[str]
    """Dead-lettered tasks by reason."""
    waiting: dict[int, int]
    """Tasks submitted and neither started nor dead-lettered, by priority."""
    held: dict[str, int]
    """Assignments an agent has not answered yet (running or queued at it), by agent."""
    done: dict[str, int]
    """Results by agent."""

    @property
    def settled(self) -> int:
        """Tasks with a final outcome: succeeded or dead-lettered."""
        return self.completed + sum(self.dead.values())


@dataclass
class _Tally:
    """Running counts, updated by the reader thread under the observer's lock."""

    by_level: Counter[int] = field(default_factory=Counter)
    started: set[str] = field(default_factory=set)
    succeeded: set[str] = field(default_factory=set)
    dead: dict[str, str] = field(default_factory=dict)
    """Task id -> reason of its dead letter."""
    open: dict[str, str] = field(default_factory=dict)
    """Task id -> agent of its latest unanswered assignment."""
    out_by_level: Counter[int] = field(default_factory=Counter)
    """Tasks no longer waiting (started or dead), by priority."""
    done: Counter[str] = field(default_factory=Counter)


class Observer:
    """Reads the run's topics in a thread; a context manager that stops it on exit."""

    def __init__(self, settings: Settings, codec: RecordCodec | None = None) -> None:
        self._settings = settings
        self._codec = codec or codec_for(settings)  # as the dispatcher and agents encode
        self._lock = threading.Lock()
        self.tasks: dict[str, Task] = {}
        self.assignments: list[Assignment] = []
        self.results: list[TaskResult] = []
        self.dead_letters: list[DeadLetter] = []
        self._tally = _Tally()
        self._distributed = 0
        self._read_to: dict[tuple[str, int], int] = {}
        """Next offset to read, by (topic, partition)."""
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": f"{settings.topic_prefix}demo-observer-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
            }
        )
        self._partitions = self._assign()
        self._thread = threading.Thread(target=self._run, name="demo-observer", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def submitted(self, task: Task) -> None:
        """The submitter sent ``task`` (call before it can be read back)."""
        with self._lock:
            self.tasks[task.task_id] = task
            self._tally.by_level[task.priority] += 1

    def snapshot(self) -> Snapshot:
        self.check()
        with self._lock:
            tally = self._tally
            return Snapshot(
                submitted=len(self.tasks),
                distributed=self._distributed,
                completed=len(tally.succeeded),
                dead=Counter(tally.dead.values()),
                waiting={
                    level: tally.by_level[level] - tally.out_by_level[level]
                    for level in range(self._settings.priority_levels)
                },
                held=dict(Counter(tally.open.values())),
                done=dict(tally.done),
            )

    def check(self) -> None:
        """Raise the reader thread's error, if it failed."""
        if self._error is not None:
            raise TaskdError(f"reading the run's topics failed: {self._error}") from self._error

    def catch_up(self, timeout_s: float = 60.0) -> None:
        """Wait until everything written to the three topics so far has been read."""
        ends = self._ends()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            positions = self._positions()
            if all(positions.get(key, 0) >= end for key, end in ends.items()):
                return
            time.sleep(0.1)
        raise KafkaError(f"the run's topics were not read to their end within {timeout_s:g} s")

    def _ends(self) -> dict[tuple[str, int], int]:
        """End offsets now, by (topic, partition), from a consumer of its own: the reader's
        is busy in its thread, and librdkafka blocks a second caller."""
        probe = Consumer({**self._settings.kafka_config(), "group.id": "demo-probe"})
        try:
            return {
                (tp.topic, tp.partition): probe.get_watermark_offsets(tp, timeout=10)[1]
                for tp in self._partitions
            }
        except KafkaException as error:
            raise KafkaError(f"cannot read the run's end offsets: {error.args[0].str()}") from error
        finally:
            probe.close()

    def _assign(self) -> list[TopicPartition]:
        topics = self._settings.topics
        wanted = (topics.dispatch, topics.results, topics.dlq)
        try:
            metadata = self._consumer.list_topics(timeout=30)
        except KafkaException as error:
            raise KafkaError(f"cannot list the run's topics: {error.args[0].str()}") from error
        partitions = [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in wanted
            for partition in metadata.topics[topic].partitions
        ]
        self._consumer.assign(partitions)
        return partitions

    def _positions(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._read_to)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for message in self._consumer.consume(_BATCH, timeout=_POLL_S):
                    self._take(message)
        except Exception as error:  # surfaced to the main thread by check()
            self._error = error

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() == ClientError._PARTITION_EOF:
                return
            raise KafkaError(error.str())
        topic = message.topic() or ""
        value = message.value() or b""
        topics = self._settings.topics
        with self._lock:
            if topic == topics.dispatch:
                for assignment in self._codec.decode(value, AssignmentBatch).assignments:
                    self._assigned(assignment)
            elif topic == topics.results:
                for result in self._codec.decode(value, ResultBatch).results:
                    self._answered(result)
            else:
                self._dead(self._codec.decode(value, DeadLetter))
            key = (topic, message.partition() or 0)
            self._read_to[key] = (message.offset() or 0) + 1

    def _assigned(self, assignment: Assignment) -> None:
        self.assignments.append(assignment)
        self._distributed += 1
        self._tally.open[assignment.task.task_id] = assignment.agent_id

    def _answered(self, result: TaskResult) -> None:
        self.results.append(result)
        tally = self._tally
        tally.done[result.agent_id] += 1
        if tally.open.get(result.task_id) == result.agent_id:
            del tally.open[result.task_id]
        if result.status is TaskStatus.SUCCEEDED:
            tally.succeeded.add(result.task_id)
        if result.status is not TaskStatus.REJECTED:
            self._leaves_queue(result.task_id, tally.started)

    def _dead(self, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)
        if letter.task is None:
            return
        task_id = letter.task.task_id
        self._tally.dead[task_id] = letter.reason.value
        self._tally.open.pop(task_id, None)
        self._leaves_queue(task_id, self._tally.started)

    def _leaves_queue(self, task_id: str, started: set[str]) -> None:
        """The task started (or died) for the first time: one less waiting at its level."""
        if task_id in started:
            return
        started.add(task_id)
        task = self.tasks.get(task_id)
        if task is not None:
            self._tally.out_by_level[task.priority] += 1
