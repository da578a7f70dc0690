"""The schemas an older release wrote with (``streams/wire/avsc/previous/``), for the tests that
check this release still reads them."""

from __future__ import annotations

import json
from typing import Any

from streams.wire import SCHEMA_DIR, AgentHeartbeat, AgentStatus
from streams.wire.schemas import WireSchema, build_wire_schema, current_schemas, named_types


def previous_definition(file: str) -> dict[str, Any]:
    """The Avro definition in ``previous/<file>``."""
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / "previous" / file).read_text())
    return loaded


def schemas_with_previous(file: str) -> dict[str, WireSchema]:
    """This release's schemas, but for the record of ``previous/<file>``, which is as an older
    release wrote it: what a component not yet upgraded encodes with."""
    old = previous_definition(file)
    schemas = dict(current_schemas())
    schemas[f"{old['namespace']}.{old['name']}"] = build_wire_schema(
        old, named_types(schemas.values())
    )
    return schemas


def heartbeat(**fields: Any) -> AgentHeartbeat:
    """A READY agent ``a1``'s heartbeat (capacity 2, idle), with ``fields`` changed."""
    values: dict[str, Any] = {
        "agent_id": "a1",
        "capacity": 2,
        "skills": (),
        "status": AgentStatus.READY,
        "in_flight": 0,
        "completed": 0,
        "sent_at": 1,
    }
    return AgentHeartbeat(**(values | fields))
