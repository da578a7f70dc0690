"""The Confluent wire format against a small fake schema registry served on 127.0.0.1.

The registry is an external service we do not ship; the fake speaks the two endpoints the
client uses (register under a subject, fetch by id) the way Confluent's does.
"""

from __future__ import annotations

import copy
import io
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.schema import parse_schema
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import ConfigError, DecodeError, EncodeError, RegistryError
from streams.wire import (
    Codec,
    ConfluentCodec,
    SchemaRegistryClient,
    Task,
    TaskResult,
    TaskStatus,
    WireRecord,
    decode_task,
    topic_name_strategy,
)
from streams.wire.schemas import current_schemas
from tests.wire.strategies import ANY_RECORD, tasks


@dataclass
class FakeRegistry:
    """What the fake registry holds, and the requests it was sent."""

    url: str = ""
    ids: dict[str, int] = field(default_factory=dict)
    """Schema text to id: one id per distinct schema, whatever the subject (as Confluent)."""
    subjects: dict[str, list[int]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    fail_with_status: int | None = None

    def register(self, subject: str, text: str) -> int:
        json.loads(text)  # a real registry refuses what is not JSON
        schema_id = self.ids.setdefault(text, len(self.ids) + 1)
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def schema(self, schema_id: int) -> str | None:
        return next((text for text, known in self.ids.items() if known == schema_id), None)


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            registry.requests.append(f"POST {self.path}")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            parts = self.path.split("/")  # /subjects/<subject>/versions
            self._answer(200, {"id": registry.register(parts[2], body["schema"])})

        def do_GET(self) -> None:
            registry.requests.append(f"GET {self.path}")
            text = registry.schema(int(self.path.rsplit("/", 1)[1]))  # /schemas/ids/<id>
            if text is None:
                self._answer(404, {"error_code": 40403, "message": "Schema not found"})
            else:
                self._answer(200, {"schema": text})

        def _answer(self, status: int, reply: dict[str, Any]) -> None:
            status = registry.fail_with_status or status
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests look at ``registry.requests`` instead."""

    return Handler


@pytest.fixture(scope="module")
def registry() -> Iterator[FakeRegistry]:
    state = FakeRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _codec(registry: FakeRegistry, **options: Any) -> ConfluentCodec:
    return ConfluentCodec(SchemaRegistryClient(registry.url, timeout_s=5), **options)


@settings(max_examples=50)
@given(record=ANY_RECORD)
def test_every_record_round_trips_through_the_registry(
    registry: FakeRegistry, record: WireRecord
) -> None:
    writer, reader = _codec(registry), _codec(registry)
    assert reader.decode(writer.encode(record), type(record)) == record


def test_the_framing_is_magic_zero_and_the_big_endian_schema_id(registry: FakeRegistry) -> None:
    task = Task.new(type="t", priority=0, now_ms=1)
    data = _codec(registry).encode(task)
    schema_id = int.from_bytes(data[1:5], "big")
    assert data[0] == 0
    assert registry.schema(schema_id) is not None
    assert json.loads(registry.schema(schema_id) or "")["name"] == "taskd.Task"
    assert schema_id in registry.subjects["taskd.Task"]  # record name strategy by default
    assert Codec().encode(task)[10:] == data[5:]  # the same Avro body as single-object


def test_the_topic_name_strategy_registers_under_topic_value(registry: FakeRegistry) -> None:
    codec = _codec(registry, subject_strategy=topic_name_strategy("taskd.tasks.p0"))
    codec.encode(Task.new(type="t", priority=0, now_ms=1))
    assert "taskd.tasks.p0-value" in registry.subjects


def test_schemas_are_registered_and_fetched_once(registry: FakeRegistry) -> None:
    writer, reader = _codec(registry), _codec(registry)
    before = len(registry.requests)
    encoded = [writer.encode(Task.new(type="t", priority=0, now_ms=n)) for n in range(5)]
    decoded = [reader.decode(data, Task) for data in encoded]
    assert [task.submitted_at for task in decoded] == list(range(5))
    assert [r.split()[0] for r in registry.requests[before:]] == ["POST", "GET"]


def test_an_older_registered_task_schema_decodes_with_defaults(registry: FakeRegistry) -> None:
    old = copy.deepcopy(current_schemas()["taskd.Task"].definition)
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("cost", "headers", "zone")]
    schema_id = SchemaRegistryClient(registry.url).register("legacy-value", old)
    task = Task.new(type="t", priority=1, now_ms=7, payload=b"p")
    datum = {k: v for k, v in task.to_avro().items() if k not in ("cost", "headers", "zone")}
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(old, {}), datum)
    data = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
    assert _codec(registry).decode(data, Task) == task


def test_decode_task_accepts_the_confluent_framing(registry: FakeRegistry) -> None:
    codec = _codec(registry)
    task = Task.new(type="t", priority=2, now_ms=9)
    assert decode_task(codec.encode(task), codec=codec, now_ms=0) == task
    assert decode_task(b'{"type": "u"}', codec=codec, now_ms=0, topic_priority=1).priority == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not the Confluent wire format: 0 bytes"),
        (b"\x00\x00\x01", "not the Confluent wire format: 3 bytes"),
        (b"\xc3\x01\x00\x00\x00\x00", "starting with c3, expected magic 00"),
        (b"\x00\x00\x0f\x42\x40\x02", "schema id 1000000 is unknown to the registry"),
    ],
)
def test_malformed_confluent_input_is_a_decode_error(
    registry: FakeRegistry, data: bytes, message: str
) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        _codec(registry).decode(data, Task)
    assert caught.value.raw == data


def test_a_schema_id_of_another_record_is_a_decode_error(registry: FakeRegistry) -> None:
    codec = _codec(registry)
    result = TaskResult(
        task_id="t", agent_id="a", attempt=0, status=TaskStatus.FAILED, started_at=1, finished_at=2
    )
    with pytest.raises(DecodeError, match=r"hold a taskd\.TaskResult, not a taskd\.Task"):
        codec.decode(codec.encode(result), Task)


def test_a_registry_schema_that_is_no_record_is_a_decode_error(registry: FakeRegistry) -> None:
    schema_id = registry.register("odd-value", '"string"')
    data = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02a"
    with pytest.raises(DecodeError, match=f"schema id {schema_id}: not an Avro record schema"):
        _codec(registry).decode(data, Task)


@settings(max_examples=50)
@given(data=st.binary(max_size=60))
def test_random_bytes_only_ever_raise_decode_error(registry: FakeRegistry, data: bytes) -> None:
    codec = _codec(registry)
    known_header = codec.encode(Task.new(type="t", priority=0, now_ms=0))[:5]
    for framed in (data, known_header + data):
        try:
            codec.decode(framed, Task)
        except DecodeError as exc:
            assert exc.raw == framed


@settings(max_examples=30)
@given(task=tasks(), cut=st.integers(0, 400))
def test_truncated_confluent_bytes_raise_decode_error(
    registry: FakeRegistry, task: Task, cut: int
) -> None:
    codec = _codec(registry)
    data = codec.encode(task)
    with pytest.raises(DecodeError):
        codec.decode(data[: min(cut, len(data) - 1)], Task)


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_unreachable_registry_is_a_registry_error_not_a_decode_error() -> None:
    codec = ConfluentCodec(SchemaRegistryClient(_closed_port_url(), timeout_s=2))
    with pytest.raises(RegistryError, match="POST"):
        codec.encode(Task.new(type="t", priority=0, now_ms=0))
    with pytest.raises(RegistryError, match="GET"):
        codec.decode(b"\x00\x00\x00\x00\x07\x00", Task)


def test_a_failing_registry_is_a_registry_error(registry: FakeRegistry) -> None:
    registry.fail_with_status = 500
    try:
        with pytest.raises(RegistryError, match="HTTP 500"):
            _codec(registry).encode(Task.new(type="t", priority=0, now_ms=0))
    finally:
        registry.fail_with_status = None


def test_a_record_that_does_not_fit_costs_no_registry_call(registry: FakeRegistry) -> None:
    before = len(registry.requests)
    bad = replace(Task.new(type="t", priority=0, now_ms=0), priority=2**40)
    with pytest.raises(EncodeError, match="priority"):
        _codec(registry).encode(bad)
    assert len(registry.requests) == before


@pytest.mark.parametrize("url", ["file:///etc/passwd", "localhost:8081", ""])
def test_a_registry_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError, match="must be http"):
        SchemaRegistryClient(url)
