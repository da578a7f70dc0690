"""Size limits, as a producer meets them: one line naming the field, its size and the setting;
records cut to fit, in order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import ConfigError, TooLargeError
from streams.settings import load_settings
from streams.wire import Task, validate_task
from streams.wire.limits import TaskLimits, by_size

LIMITS = TaskLimits(id_bytes=64, type_bytes=16, payload_bytes=1_000, headers_bytes=100)


def _task(**changes: object) -> Task:
    fields: dict[str, object] = {
        "task_id": "t-1",
        "type": "resize",
        "priority": 1,
        "payload": b"{}",
        "submitted_at": 0,
    }
    return Task(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task_id": "x" * 65}, "task_id is 65 bytes, over the limit of 64 (max_task_id_bytes)"),
        ({"type": "é" * 9}, "type is 18 bytes, over the limit of 16 (max_task_type_bytes)"),
        ({"payload": b"p" * 1_001}, "payload is 1,001 bytes, over the limit of 1,000"),
        ({"headers": (("k", "v" * 100),)}, "headers is 101 bytes, over the limit of 100"),
        ({"affinity_key": "k" * 65}, "affinity_key is 65 bytes"),
        ({"required_skills": ("s" * 60, "t" * 60)}, "tenant, zone and skills is 127 bytes"),
    ],
)
def test_a_task_over_a_limit_says_which_field_by_how_much(
    changes: dict[str, object], message: str
) -> None:
    task = _task(**changes)
    assert LIMITS.problem(task) is not None and message in (LIMITS.problem(task) or "")
    with pytest.raises(TooLargeError, match=message.split(" (")[0]):
        validate_task(task, levels=4, limits=LIMITS)


def test_a_task_at_its_limits_passes() -> None:
    task = _task(task_id="x" * 64, type="y" * 16, payload=b"p" * 1_000)
    assert LIMITS.problem(task) is None
    assert validate_task(task, levels=4, limits=LIMITS) is task


def test_limits_a_record_cannot_hold_are_refused_when_the_settings_load() -> None:
    with pytest.raises(ConfigError, match="would not fit max_record_bytes"):
        load_settings(max_payload_bytes=2_000_000)
    settings = load_settings(max_payload_bytes=2_000_000, max_record_bytes=4_000_000)
    assert (settings.max_payload_bytes, settings.max_record_bytes) == (2_000_000, 4_000_000)


@given(st.lists(st.integers(0, 50)), st.integers(1, 60))
def test_runs_keep_the_order_and_stay_under_the_bound(sizes: list[int], most: int) -> None:
    runs = by_size(sizes, lambda size: size, most)
    assert [size for run in runs for size in run] == sizes
    assert all(sum(run) <= most or len(run) == 1 for run in runs)
    assert all(run for run in runs)
    for before, after in itertools.pairwise(runs):
        assert sum(before) + after[0] > most  # a run is cut only when the next would not fit
