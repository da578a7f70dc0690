"""The application API without a broker: what ``submit`` sends and what an agent's handler makes
of it, as a user of ``@app.task`` relies on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import taskd
from streams.app import call_arguments, encode_arguments
from streams.errors import ConfigError, EncodeError
from streams.settings import load_settings
from streams.wire import Task
from streams.worker import FatalError, RetryableError

app = taskd.App(load_settings(bootstrap_servers="127.0.0.1:1", topic_prefix="app-test."))


@app.task("area", priority=0, skills=["gpu"], ttl=2.5)
def area(w: int, h: int = 1, *, unit: str = "px") -> dict[str, Any]:
    return {"area": w * h, "unit": unit}


@app.task()
async def shout(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


@app.task("raw", payload="bytes")
def raw(data: bytes) -> bytes:
    return data[::-1]


def _wire(task: taskd.AppTask[..., Any], payload: bytes) -> Task:
    return Task(task_id="t", type=task.type, priority=0, payload=payload, submitted_at=0)


def test_arguments_travel_as_one_json_object_by_name() -> None:
    assert json.loads(encode_arguments(area, (3,), {"h": 4})) == {"w": 3, "h": 4}
    assert json.loads(encode_arguments(area, (), {"w": 3, "unit": "cm"})) == {"w": 3, "unit": "cm"}
    output = app.handlers()["area"](_wire(area, b'{"w": 3, "h": 4, "unit": "cm"}'))
    assert json.loads(output) == {"area": 12, "unit": "cm"}


def test_arguments_that_do_not_fit_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(EncodeError, match="missing a required argument: 'w'"):
        encode_arguments(area, (), {})
    with pytest.raises(EncodeError, match="unexpected keyword argument 'depth'"):
        encode_arguments(area, (1,), {"depth": 2})
    with pytest.raises(EncodeError, match="not JSON"):
        encode_arguments(area, ({1, 2},), {})
    with pytest.raises(EncodeError, match="one bytes argument"):
        encode_arguments(raw, ("text",), {})


def test_a_payload_that_does_not_fit_fails_for_good_and_a_retry_is_transient() -> None:
    handler = app.handlers()["area"]
    with pytest.raises(FatalError, match="not JSON"):
        handler(_wire(area, b"{oops"))
    with pytest.raises(FatalError, match="missing a required argument"):
        handler(_wire(area, b'{"h": 2}'))
    assert taskd.Retry is RetryableError and taskd.Fail is FatalError


def test_async_and_bytes_tasks_run_as_declared() -> None:
    output = asyncio.run(app.handlers()["shout"](_wire(shout, b'{"text": "hi"}')))
    assert json.loads(output) == "HI"
    assert app.handlers()["raw"](_wire(raw, b"abc")) == b"cba"
    assert area(2, 3) == {"area": 6, "unit": "px"}  # still a plain function


def test_what_a_task_sends_follows_its_declaration_and_its_options() -> None:
    sent = area._task(b"{}")
    assert (sent.type, sent.priority, sent.required_skills, sent.ttl_ms) == (
        "area",
        0,
        ("gpu",),
        2500,
    )
    urgent = area.options(priority=3, tenant="acme", affinity_key="k")._task(b"{}")
    assert (urgent.priority, urgent.tenant, urgent.affinity_key) == (3, "acme", "k")
    ordered = area.options(ordering_key="account-7", affinity_key="k")._task(b"{}")
    assert ordered.ordering_key == "account-7"
    assert ordered.kafka_key == "account-7"  # before the affinity key: one partition, in order
    assert urgent.kafka_key == "k" and sent.kafka_key == sent.task_id
    assert shout._task(b"{}").priority == app.settings.priority_levels // 2
    with pytest.raises(ConfigError, match="unexpected keyword argument 'colour'"):
        area.options(colour="red")


def test_a_task_name_is_declared_once() -> None:
    with pytest.raises(ConfigError, match="declared twice"):
        app.task("area")(lambda: None)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(w=_json, h=_json, unit=_json)
def test_any_json_arguments_reach_the_function_as_they_were_given(
    w: Any, h: Any, unit: Any
) -> None:
    args, kwargs = call_arguments(area, encode_arguments(area, (w,), {"h": h, "unit": unit}))
    assert area.signature.bind(*args, **kwargs).arguments == {"w": w, "h": h, "unit": unit}


@app.task("gather")
def gather(first: int, /, *rest: int, scale: int = 1, **labels: str) -> dict[str, Any]:
    return {"total": scale * (first + sum(rest)), "labels": labels}


def test_positional_only_star_args_and_keyword_catch_alls_reach_the_function() -> None:
    payload = encode_arguments(gather, (1, 2, 3), {"scale": 2, "colour": "red"})
    args, kwargs = call_arguments(gather, payload)
    assert gather.function(*args, **kwargs) == {"total": 12, "labels": {"colour": "red"}}
    output = app.handlers()["gather"](_wire(gather, payload))
    assert json.loads(output) == {"total": 12, "labels": {"colour": "red"}}
    with pytest.raises(FatalError, match="unexpected argument"):
        app.handlers()["gather"](_wire(gather, b'{"first": 1, "nope": 2}'))
