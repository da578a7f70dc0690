"""The wire format: record types, Avro schemas, codecs and the inbound JSON form of tasks.

Imports only ``streams.core``, ``streams.errors`` and fastavro; no Kafka client.
"""

from streams.wire.codec import Codec, RecordCodec
from streams.wire.json_input import decode_task, parse_task_json, validate_task
from streams.wire.mapping import task_to_job
from streams.wire.records import (
    NO_HANDLER,
    RECORD_TYPES,
    AgentHeartbeat,
    AgentRegistration,
    AgentStatus,
    Assignment,
    AssignmentBatch,
    DeadLetter,
    DispatcherStatus,
    EndedTasks,
    RegistrationStatus,
    ResultBatch,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskOptions,
    TaskResult,
    TaskState,
    TaskStatus,
    WireRecord,
)
from streams.wire.registry_client import (
    ConfluentCodec,
    SchemaRegistryClient,
    record_name_strategy,
    topic_name_strategy,
)
from streams.wire.schemas import SCHEMA_DIR, WireSchema, current_schemas

__all__ = [
    "NO_HANDLER",
    "RECORD_TYPES",
    "SCHEMA_DIR",
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
    "RecordCodec",
    "RegistrationStatus",
    "ResultBatch",
    "SchemaRegistryClient",
    "Task",
    "TaskEvent",
    "TaskEventKind",
    "TaskOptions",
    "TaskResult",
    "TaskState",
    "TaskStatus",
    "WireRecord",
    "WireSchema",
    "current_schemas",
    "decode_task",
    "parse_task_json",
    "record_name_strategy",
    "task_to_job",
    "topic_name_strategy",
    "validate_task",
]
