"""The .avsc files, the Python records and the fingerprints agree with each other and the spec."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form

from streams.core.model import ORDERING_KEY_HEADER, DeadLetterReason
from streams.errors import ConfigError
from streams.wire import (
    RECORD_TYPES,
    SCHEMA_DIR,
    AgentHeartbeat,
    AgentStatus,
    Codec,
    DeadLetter,
    RegistrationStatus,
    Task,
    TaskState,
    TaskStatus,
    task_to_job,
)
from streams.wire.records import TaskOptions
from streams.wire.schemas import current_schemas
from tests.wire.previous import heartbeat, previous_definition, schemas_with_previous

FILES = (
    "Task",
    "Assignment",
    "TaskResult",
    "AgentHeartbeat",
    "DeadLetter",
    "AgentRegistration",
    "TaskEvent",
    "AssignmentBatch",
    "ResultBatch",
    "TaskState",
    "EndedTasks",
    "DispatcherStatus",
    "TaskOutcome",
    "CancelRequest",
)
SOURCE_DIR = Path(__file__).resolve().parents[2] / "schemas"
"""Where the schemas are written and reviewed; the package ships copies."""


def _avsc(stem: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / f"{stem}.avsc").read_text())
    return loaded


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO written from the Avro specification, independent of fastavro's."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_the_package_ships_exactly_the_schemas_of_the_repository_top() -> None:
    assert sorted(path.stem for path in SOURCE_DIR.glob("*.avsc")) == sorted(FILES)
    for shipped_dir, source in (
        (SCHEMA_DIR, SOURCE_DIR),
        (SCHEMA_DIR / "previous", SOURCE_DIR / "previous"),
    ):
        shipped = {item.name: item.read_bytes() for item in shipped_dir.iterdir() if item.is_file()}
        written = {path.name: path.read_bytes() for path in source.glob("*.avsc")}
        assert shipped == written, f"copy {source}/*.avsc to {shipped_dir} (they must be equal)"


@pytest.mark.parametrize("stem", FILES)
def test_every_file_is_a_taskd_record_schema(stem: str) -> None:
    raw = _avsc(stem)
    assert (raw["type"], raw["name"], raw["namespace"]) == ("record", stem, "taskd")
    assert f"taskd.{stem}" in current_schemas()


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_dataclass_fields_are_the_avro_fields_in_order(record_type: type[Any]) -> None:
    avro = [field["name"] for field in _avsc(record_type.__name__)["fields"]]
    python = [field.name for field in dataclasses.fields(record_type)]
    assert python == avro
    assert f"taskd.{record_type.__name__}" == record_type.SCHEMA_NAME


def _python_default(field: dataclasses.Field[Any]) -> Any:
    return "<required>" if field.default is dataclasses.MISSING else field.default


def _avro_default(field: dict[str, Any]) -> Any:
    """The default in its Python form: arrays and maps are tuples in the records."""
    if "default" not in field:
        return "<required>"
    default = field["default"]
    if isinstance(default, list):
        return tuple(default)
    if isinstance(default, dict):
        return tuple(sorted(default.items()))
    return default


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_dataclass_defaults_are_the_avro_defaults(record_type: type[Any]) -> None:
    avro = {field["name"]: _avro_default(field) for field in _avsc(record_type.__name__)["fields"]}
    python = {field.name: _python_default(field) for field in dataclasses.fields(record_type)}
    assert python == avro


def _symbols(stem: str, field_name: str) -> list[str]:
    (field,) = [field for field in _avsc(stem)["fields"] if field["name"] == field_name]
    symbols: list[str] = field["type"]["symbols"]
    return symbols


def test_enums_have_the_avro_symbols() -> None:
    assert [status.value for status in TaskStatus] == _symbols("TaskResult", "status")
    assert [status.value for status in AgentStatus] == _symbols("AgentHeartbeat", "status")
    assert [reason.value for reason in DeadLetterReason] == _symbols("DeadLetter", "reason")
    assert [status.value for status in RegistrationStatus] == _symbols(
        "AgentRegistration", "status"
    )


def test_task_new_options_are_the_optional_task_fields() -> None:
    given_by_new = {"task_id", "type", "priority", "payload", "submitted_at"}
    task_fields = {field.name for field in dataclasses.fields(Task)}
    as_headers = {"ordering_key"}  # a header, not a field: no schema change for it
    assert set(TaskOptions.__annotations__) == task_fields - given_by_new | as_headers


def test_an_ordering_key_is_a_header_that_survives_the_wire() -> None:
    task = Task.new(type="t", priority=0, now_ms=1, ordering_key="acct-7", headers=(("a", "b"),))
    assert task.headers == (("a", "b"), (ORDERING_KEY_HEADER, "acct-7"))
    decoded = Codec().decode(Codec().encode(task), Task)
    assert decoded.ordering_key == "acct-7" and decoded.kafka_key == "acct-7"
    assert task_to_job(decoded).ordering_key == "acct-7"
    assert Task.new(type="t", priority=0, now_ms=1).ordering_key is None


@pytest.mark.parametrize("name", ["taskd.Assignment", "taskd.DeadLetter"])
def test_schemas_nesting_task_are_standalone_for_a_registry(name: str) -> None:
    definition = current_schemas()[name].definition
    parse_schema(definition, {})  # raises if taskd.Task were only referred to by name
    assert "taskd.Task" in json.dumps(definition)
    assert '"name": "payload"' in json.dumps(definition)


def test_definitions_keep_the_timestamp_logical_type() -> None:
    assert "timestamp-millis" in json.dumps(current_schemas()["taskd.Task"].definition)


def test_crc64_avro_matches_the_spec_test_vector() -> None:
    # Java's SchemaNormalization.parsingFingerprint64 of "null"
    assert _crc64_avro(b'"null"') == 7195948357588979594


@pytest.mark.parametrize("name", [f"taskd.{stem}" for stem in FILES])
def test_fingerprint_is_crc64_of_the_canonical_form_little_endian(name: str) -> None:
    schema = current_schemas()[name]
    canonical = to_parsing_canonical_form(parse_schema(schema.definition, {}))
    expected = _crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert schema.fingerprint == expected


def test_encoded_records_carry_the_magic_and_the_fingerprint() -> None:
    data = Codec().encode(Task.new(type="resize", priority=1, now_ms=1_000))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == current_schemas()["taskd.Task"].fingerprint


def test_a_missing_schema_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Task\.avsc is missing"):
        current_schemas(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read as JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('{"type": "record", "name": "Task", "fields": [{"name": "x", "type": "nope"}]}', "nope"),
        ('{"type": "enum", "name": "Task", "symbols": ["A"]}', "not an Avro record schema"),
    ],
)
def test_a_broken_schema_file_is_a_config_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "Task.avsc").write_text(content)
    with pytest.raises(ConfigError, match=message):
        current_schemas(tmp_path)


def test_a_heartbeat_of_an_agent_of_the_last_release_is_read_with_every_type_handled() -> None:
    """``streams/wire/avsc/previous/``: what an agent not yet upgraded writes (its heartbeat
    has no ``task_types``) still decodes, as an agent that handles every type."""
    old = previous_definition("AgentHeartbeat.1.avsc")
    assert "task_types" not in {field["name"] for field in old["fields"]}
    current = schemas_with_previous("AgentHeartbeat.1.avsc")
    beat = heartbeat()
    written = Codec(current).encode(beat)  # as the older agent wrote it
    assert Codec().decode(written, AgentHeartbeat) == beat
    assert Codec().decode(written, AgentHeartbeat).task_types is None


def test_a_dead_letter_of_the_last_release_is_read_by_this_one() -> None:
    """A dead letter written before TOO_LARGE existed (``previous/DeadLetter.1.avsc``) still
    decodes, so `taskd dlq` reads the dead letters kept from before an upgrade."""
    assert "TOO_LARGE" not in json.dumps(previous_definition("DeadLetter.1.avsc"))
    current = schemas_with_previous("DeadLetter.1.avsc")
    letter = DeadLetter(raw=b"x", reason=DeadLetterReason.EXPIRED, error="e", attempts=1, dead_at=1)
    assert Codec().decode(Codec(current).encode(letter), DeadLetter) == letter


def test_a_heartbeat_of_an_agent_without_batch_fields_is_read_with_no_batch_handler() -> None:
    """``previous/AgentHeartbeat.2.avsc``: an agent of the release before batch handlers were
    announced still decodes, with none announced (the dispatcher does not group for it)."""
    old = previous_definition("AgentHeartbeat.2.avsc")
    assert "batch_max_size" not in {field["name"] for field in old["fields"]}
    current = schemas_with_previous("AgentHeartbeat.2.avsc")
    beat = heartbeat(task_types=("embed",))
    decoded = Codec().decode(Codec(current).encode(beat), AgentHeartbeat)
    assert decoded == beat
    assert decoded.batch_max_size == () and decoded.batch_max_wait_ms == ()


def test_a_heartbeat_of_an_agent_that_does_not_say_its_prefetch_is_read_with_none() -> None:
    """``previous/AgentHeartbeat.3.avsc``: an agent of the release before the prefetch was
    announced still decodes, with none said (the dispatcher sends it its share)."""
    old = previous_definition("AgentHeartbeat.3.avsc")
    assert "prefetch" not in {field["name"] for field in old["fields"]}
    current = schemas_with_previous("AgentHeartbeat.3.avsc")
    beat = heartbeat(batch_max_size=(("embed", 8),), batch_max_wait_ms=(("embed", 20),))
    decoded = Codec().decode(Codec(current).encode(beat), AgentHeartbeat)
    assert decoded == beat and decoded.prefetch is None
    assert Codec().decode(Codec().encode(heartbeat(prefetch=3)), AgentHeartbeat).prefetch == 3


def test_a_task_state_of_the_last_release_is_read_with_no_preemption() -> None:
    """``previous/TaskState.1.avsc``: a dispatcher upgraded over a changelog written before the
    preemption count was kept recovers its tasks, none counted preempted."""
    old = previous_definition("TaskState.1.avsc")
    assert "preempted" not in {field["name"] for field in old["fields"]}
    current = schemas_with_previous("TaskState.1.avsc")
    task = Task(task_id="t1", type="work", priority=3, payload=b"", submitted_at=1)
    state = TaskState(task=task, shard=2, agent_id="a1", epoch=4, dispatched_at=5, lease_ms=6)
    decoded = Codec().decode(Codec(current).encode(state), TaskState)
    assert decoded == state and decoded.preempted == 0
    counted = dataclasses.replace(state, preempted=1)
    assert Codec().decode(Codec().encode(counted), TaskState).preempted == 1


def test_a_heartbeat_carries_its_batch_handlers() -> None:
    beat = heartbeat(
        capacity=16, batch_max_size={"embed": 16}.items(), batch_max_wait_ms=(("embed", 20),)
    )
    decoded = Codec().decode(Codec().encode(beat), AgentHeartbeat)
    assert decoded.batch_max_size == (("embed", 16),)
    assert decoded.batch_max_wait_ms == (("embed", 20),)
