"""Tasks become the core's Jobs with absolute times and the core's defaults."""

from __future__ import annotations

import dataclasses

from hypothesis import given

from streams.wire import Task, task_to_job
from tests.wire.strategies import valid_tasks


@given(valid_tasks())
def test_a_job_keeps_what_the_scheduler_and_router_need(task: Task) -> None:
    job = task_to_job(task)
    assert (job.task_id, job.priority, job.submitted_ms) == (
        task.task_id,
        task.priority,
        task.submitted_at,
    )
    assert (job.tenant, job.task_type, job.deadline_ms) == (task.tenant, task.type, task.deadline)
    assert (job.zone, job.target_agent, job.affinity_key) == (
        task.zone,
        task.target_agent,
        task.affinity_key,
    )
    assert (job.attempt, job.max_attempts) == (task.attempt, task.max_attempts)
    assert job.required_skills == frozenset(task.required_skills)
    assert dict(job.headers) == dict(task.headers)
    assert list(job.headers) == sorted(job.headers)


@given(valid_tasks())
def test_ttl_becomes_an_absolute_expiry(task: Task) -> None:
    job = task_to_job(task)
    if task.ttl_ms is None:
        assert job.expires_ms is None
    else:
        assert job.expires_ms == task.submitted_at + task.ttl_ms
    starts = [t for t in (job.deadline_ms, job.expires_ms) if t is not None]
    assert job.last_start_ms() == (min(starts) if starts else None)


@given(valid_tasks())
def test_a_task_without_cost_is_one_unit_of_work(task: Task) -> None:
    assert task_to_job(dataclasses.replace(task, cost=None)).cost == 1.0
    assert task_to_job(dataclasses.replace(task, cost=2.5)).cost == 2.5


def test_headers_are_found_by_name() -> None:
    task = Task.new(type="t", priority=0, now_ms=0, headers=(("route", "gpu"), ("a", "b")))
    job = task_to_job(task)
    assert (job.header("route"), job.header("missing")) == ("gpu", None)


@given(valid_tasks())
def test_jobs_of_equal_skills_share_one_skill_set(task: Task) -> None:
    again = dataclasses.replace(task, required_skills=tuple(task.required_skills))
    first, second = task_to_job(task), task_to_job(again)
    assert first.required_skills is second.required_skills
    assert task_to_job(dataclasses.replace(task, required_skills=())).required_skills is (
        task_to_job(dataclasses.replace(again, required_skills=())).required_skills
    )


def test_the_shared_skill_sets_stay_bounded_and_right() -> None:
    from streams.wire import mapping

    for index in range(3 * mapping._SKILL_SETS_KEPT):
        skills = (f"s{index}", "gpu")
        assert mapping.skill_set(skills) == frozenset(skills)
        assert len(mapping._skill_sets) <= mapping._SKILL_SETS_KEPT
    assert mapping.skill_set(()) == frozenset()
