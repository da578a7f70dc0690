"""Decoded tasks share the strings that take few values (type, tenant, zone, target agent,
skills): a dispatcher holding many tasks keeps one copy of each, not one per task."""

from __future__ import annotations

from hypothesis import given

from streams.wire import Task
from streams.wire.codec import Codec
from tests.wire.strategies import valid_tasks

CODEC = Codec()


@given(valid_tasks())
def test_decoding_twice_gives_equal_tasks_sharing_their_few_valued_strings(task: Task) -> None:
    first = CODEC.decode(CODEC.encode(task), Task)
    second = CODEC.decode(CODEC.encode(task), Task)
    assert first == second == task
    for name in ("type", "tenant", "zone", "target_agent"):
        assert getattr(first, name) is getattr(second, name)
    assert all(a is b for a, b in zip(first.required_skills, second.required_skills, strict=True))


def test_a_value_of_another_type_is_left_for_the_encoder_to_refuse() -> None:
    task = Task(task_id="t", type=7, priority=0, payload=b"", submitted_at=0)  # type: ignore[arg-type]
    assert task.type == 7
