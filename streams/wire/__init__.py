"""The wire format: record types, Avro schemas, codecs and the inbound JSON form of tasks.

Imports only ``streams.core``, ``streams.errors`` and fastavro; no Kafka client.
"""

from streams.wire.codec import Codec, RecordCodec
from streams.wire.confluent import (
    ConfluentCodec,
    SchemaRegistry,
    record_name_strategy,
    topic_name_strategy,
)
from streams.wire.json_input import decode_task, parse_task_json, validate_task
from streams.wire.mapping import task_to_job
from streams.wire.records import (
    NO_HANDLER,
    RECORD_TYPES,
    REPLY_PARTITION_HEADER,
    SOURCE_KEY_HEADER,
    AgentHeartbeat,
    AgentRegistration,
    AgentStatus,
    Assignment,
    AssignmentBatch,
    DeadLetter,
    DispatcherStatus,
    EndedTasks,
    OutcomeStatus,
    RegistrationStatus,
    ResultBatch,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskOptions,
    TaskOutcome,
    TaskResult,
    TaskState,
    TaskStatus,
    WireRecord,
    reply_partition,
)
from streams.wire.schemas import SCHEMA_DIR, WireSchema, current_schemas

__all__ = [
    "NO_HANDLER",
    "RECORD_TYPES",
    "REPLY_PARTITION_HEADER",
    "SCHEMA_DIR",
    "SOURCE_KEY_HEADER",
    "AgentHeartbeat",
    "AgentRegistration",
    "AgentStatus",
    "Assignment",
    "AssignmentBatch",
    "Codec",
    "ConfluentCodec",
    "DeadLetter",
    "DispatcherStatus",
    "EndedTasks",
    "OutcomeStatus",
    "RecordCodec",
    "RegistrationStatus",
    "ResultBatch",
    "SchemaRegistry",
    "Task",
    "TaskEvent",
    "TaskEventKind",
    "TaskOptions",
    "TaskOutcome",
    "TaskResult",
    "TaskState",
    "TaskStatus",
    "WireRecord",
    "WireSchema",
    "current_schemas",
    "decode_task",
    "parse_task_json",
    "record_name_strategy",
    "reply_partition",
    "task_to_job",
    "topic_name_strategy",
    "validate_task",
]
