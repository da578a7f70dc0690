"""A stand-in for a Confluent schema registry on 127.0.0.1, answering with its recorded replies.

No real registry runs on this machine: Karapace is not on PyPI, Apicurio Registry does not
resolve from Maven Central (its schema-util modules need artifacts that only Confluent's own
Maven repository serves), and Confluent's registry is served from there only. So the tests talk
to this server, which answers the calls confluent-kafka's ``SchemaRegistryClient`` makes for us
with the bodies, statuses and error codes of Confluent's REST API (API reference, "Schemas" and
"Subjects"):

- ``POST /subjects/{subject}/versions`` -> ``200 {"id": 1}``; one id per distinct schema
  whatever the subject (registering it again gives the same id); a schema that is not valid
  Avro -> ``422 {"error_code": 42201, "message": "Invalid schema ..."}``; another schema type
  than AVRO -> ``422 {"error_code": 42201, ...}`` too (no Protobuf or JSON support here).
- ``GET /schemas/ids/{id}`` -> ``200 {"schema": "<the schema as registered>"}`` (no
  ``schemaType`` for Avro, as Confluent's), or ``404 {"error_code": 40403, "message":
  "Schema 7 not found"}``.
- ``GET /subjects`` and ``GET /subjects/{subject}/versions`` -> the JSON lists, or ``404
  {"error_code": 40401, "message": "Subject 'x' not found."}``.

Compatibility rules are not checked (Confluent's default, BACKWARD, accepts every schema of
ours: fields are only ever added with defaults).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastavro.schema import parse_schema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class RecordedRegistry:
    """What the registry holds and the requests it was sent (``METHOD /path``)."""

    url: str = ""
    ids: dict[str, int] = field(default_factory=dict)
    """Schema (normalized JSON text) to id."""
    texts: dict[int, str] = field(default_factory=dict)
    """Id to the schema text as it was registered first."""
    subjects: dict[str, list[int]] = field(default_factory=dict)
    """Subject to the ids of its versions, oldest first."""
    requests: list[str] = field(default_factory=list)
    fail_with_status: int | None = None
    """Answer every request with this status (500: Confluent's ``error_code`` 50001)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, subject: str, text: str) -> int:
        """The id of ``text`` under ``subject`` (ValueError if it is not an Avro schema)."""
        schema = json.loads(text)
        parse_schema(schema, {})
        key = json.dumps(schema, sort_keys=True)
        with self.lock:
            schema_id = self.ids.setdefault(key, len(self.ids) + 1)
            self.texts.setdefault(schema_id, text)
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id


Reply = tuple[int, Any]
_NOT_FOUND: Reply = (404, {"error_code": 404, "message": "HTTP 404 Not Found"})


def _post(registry: RecordedRegistry, parts: list[str], body: dict[str, Any]) -> Reply:
    """``POST /subjects/<subject>/versions``."""
    if len(parts) != 4 or parts[1] != "subjects" or parts[3] != "versions":
        return _NOT_FOUND
    if body.get("schemaType", "AVRO") != "AVRO":
        return 422, {"error_code": 42201, "message": "Invalid schema type"}
    try:
        schema_id = registry.register(urllib.parse.unquote(parts[2]), body["schema"])
    except (KeyError, ValueError, TypeError) as exc:
        message = f"Invalid schema {body.get('schema')!r}, details: {exc}"
        return 422, {"error_code": 42201, "message": message}
    return 200, {"id": schema_id}


def _get(registry: RecordedRegistry, parts: list[str]) -> Reply:
    """``GET /schemas/ids/<id>``, ``GET /subjects``, ``GET /subjects/<subject>/versions``."""
    if parts[1:3] == ["schemas", "ids"] and len(parts) == 4 and parts[3].isdigit():
        text = registry.texts.get(int(parts[3]))
        if text is None:
            return 404, {"error_code": 40403, "message": f"Schema {parts[3]} not found"}
        return 200, {"schema": text}
    if parts[1:] == ["subjects"]:
        return 200, sorted(registry.subjects)
    if parts[1] == "subjects" and len(parts) == 4 and parts[3] == "versions":
        subject = urllib.parse.unquote(parts[2])
        versions = registry.subjects.get(subject)
        if versions is None:
            return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
        return 200, list(range(1, len(versions) + 1))
    return _NOT_FOUND


def _handler(registry: RecordedRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            path = self._record("POST")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._answer(*_post(registry, path.split("/"), body))

        def do_GET(self) -> None:
            self._answer(*_get(registry, self._record("GET").split("/")))

        def _record(self, method: str) -> str:
            path = urllib.parse.urlsplit(self.path).path
            registry.requests.append(f"{method} {path}")
            return path

        def _answer(self, status: int, reply: Any) -> None:
            if registry.fail_with_status is not None:
                status = registry.fail_with_status
                reply = {"error_code": status * 100 + 1, "message": "Internal Server Error"}
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests look at ``registry.requests`` instead."""

    return Handler


@contextmanager
def recorded_registry() -> Iterator[RecordedRegistry]:
    """The registry, serving on a free port of 127.0.0.1 until the block ends."""
    state = RecordedRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="registry-stub", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
