"""The dispatcher's metrics, its JSON views and the HTTP server serving them.

The views and the gauges are read off a real :class:`Distributor` driven through heartbeats,
tasks and results (no broker needed: they only read the core); the server is started on a free
port of 127.0.0.1 and asked over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
from dataclasses import dataclass
from fractions import Fraction

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from streams.adapters.http import METRICS_CONTENT_TYPE, StatusServer
from streams.adapters.metrics import AgentMetrics, DispatcherMetrics, load_cv
from streams.adapters.status import (
    AGENT_NAME,
    NOT_AVAILABLE,
    LoopLoad,
    SummaryCache,
    bottleneck_of,
    context_view,
    human_count,
    human_duration,
    human_percent,
    progress_view,
    run_state,
    scale_view,
)
from streams.core.actions import Action, ResultStatus, Retry
from streams.core.agents import HealthConfig, Heartbeat
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import HeartbeatReceived, ResultReported, TaskArrived, TaskStarted
from streams.core.model import DeadLetterReason, Job
from streams.core.routing import RoutingConfig
from streams.core.scaling import Autoscaler, ScalingConfig
from streams.core.scheduling import SchedulerConfig
from streams.core.stats import Demand
from streams.dispatcher_config import DispatcherConfig
from streams.errors import ConfigError, TaskdError
from streams.settings import Settings, load_settings

NOW_MS = 500
"""The scenario's last event happens at 400 ms; views are taken at 500 ms."""

# --- the scenario --------------------------------------------------------------------------


@dataclass
class Run:
    """A distributor after the scenario, with what the driver saw."""

    core: Distributor
    jobs: dict[str, Job]
    actions: list[Action]


def drive() -> Run:
    """Two agents, six tasks: one succeeds, one fails, one expires, two run, one waits.

    a: 2 slots (gpu, eu, weight 2); b: 1 slot. At 0 ms t1..t3 go out at once, t4 (deadline
    150 ms) and t5 wait, t6 needs a skill no agent has and waits. Every started task starts at
    100 ms. At 200 ms t4 has expired; at 300 ms t1 succeeds (t5 takes its slot on a); at 400 ms
    t2 fails on b, which stays idle. So a is busy for all 500 ms, b for 400 of 500.
    """
    core = Distributor(
        DistributorConfig(
            scheduler=SchedulerConfig(
                aging_ms=None, escalation_ms=0, tenant_max_in_flight={"acme": 5}
            ),
            routing=RoutingConfig(strategy="least-connections"),
            health=HealthConfig(
                heartbeat_interval_ms=1_000, suspect_after_ms=3_000, down_after_ms=10_000
            ),
        )
    )
    actions: list[Action] = []
    actions += core.handle([HeartbeatReceived(beat("a", 2, "gpu", zone="eu", weight=2.0))], 0)
    actions += core.handle([HeartbeatReceived(beat("b", 1))], 0)
    jobs = {
        job.task_id: job
        for job in (
            Job("t1", 0, 0, deadline_ms=1_000),
            Job("t2", 1, 0),
            Job("t3", 2, 0, tenant="acme"),
            Job("t4", 3, 0, deadline_ms=150),
            Job("t5", 3, 0),
            Job("t6", 2, 0, required_skills=frozenset({"tpu"})),
        )
    }
    for job in jobs.values():
        actions += core.handle([TaskArrived(job)], 0)
    for task_id in ("t1", "t2", "t3"):
        actions += core.handle([TaskStarted(task_id, holder(core, task_id), 0, 100)], 100)
    actions += core.tick(200)
    succeeded = ResultReported("t1", holder(core, "t1"), 0, ResultStatus.SUCCEEDED)
    actions += core.handle([succeeded], 300)
    failed = ResultReported("t2", holder(core, "t2"), 0, ResultStatus.FAILED, "boom")
    actions += core.handle([failed], 400)
    return Run(core, jobs, actions)


def beat(agent_id: str, capacity: int, *skills: str, zone: str | None = None, weight: float = 1.0,
         sent_ms: int = 0) -> Heartbeat:  # fmt: skip
    return Heartbeat(agent_id, capacity, frozenset(skills), zone, weight, 0.0, "READY", sent_ms)


def holder(core: Distributor, task_id: str) -> str:
    lease = core.lease_of(task_id)
    assert lease is not None, f"{task_id} is not in flight"
    return lease.agent_id


def settings_for_views() -> Settings:
    return load_settings(
        sasl_username="user",
        sasl_password=SecretStr("hunter2"),
        security_protocol="SASL_PLAINTEXT",
        bootstrap_servers="secret-broker:9092",
    )


def test_the_scenario_does_what_its_docstring_says() -> None:
    run = drive()
    assert {(type(a).__name__, a.job.task_id) for a in run.actions if hasattr(a, "job")} == {
        ("Dispatch", "t1"), ("Dispatch", "t2"), ("Dispatch", "t3"), ("Dispatch", "t5"),
        ("DeadLetter", "t4"), ("Finished", "t1"), ("Completed", "t1"), ("Finished", "t2"),
        ("DeadLetter", "t2"),
    }  # fmt: skip
    leases = {task_id: run.core.lease_of(task_id) for task_id in run.jobs}
    assert {task_id: lease.agent_id for task_id, lease in leases.items() if lease} == {
        "t3": "a",
        "t5": "a",
    }
    assert run.core.held == 1


# --- human formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0"), (950, "950"), (999, "999"), (1_000, "1K"), (1_234, "1.2K"), (9_960, "10K"),
     (45_000, "45K"), (999_499, "999K"), (999_500, "1M"), (1_300_000, "1.3M"),
     (2_500_000_000, "2.5B"), (7 * 10**12, "7T"), (3 * 10**18, "3000000T"), (-1_500, "-1.5K")],
)  # fmt: skip
def test_counts(count: int, text: str) -> None:
    assert human_count(count) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (0.44, "0.4ms"), (230, "230ms"), (999.4, "999ms"), (999.6, "1s"),
     (1_400, "1.4s"), (14_000, "14s"), (59_600, "1m"), (120_000, "2m"), (150_000, "2.5m"),
     (5_400_000, "1.5h"), (3 * 86_400_000, "3d"), (-230, "-230ms"), (None, NOT_AVAILABLE),
     (math.nan, NOT_AVAILABLE), (math.inf, NOT_AVAILABLE)],
)  # fmt: skip
def test_durations(ms: float | None, text: str) -> None:
    assert human_duration(ms) == text


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(0.0, "0%"), (0.07, "7%"), (0.0712, "7%"), (0.97, "97%"), (1.0, "100%"), (1.73, "173%"),
     (0.004, "0.4%"), (0.0000001, "0.1%"), (0.996, "99.6%"), (0.99999, "99.9%"),
     (0.99, "99%"), (None, NOT_AVAILABLE), (math.nan, NOT_AVAILABLE), (1e307, NOT_AVAILABLE)],
)  # fmt: skip
def test_percentages(ratio: float | None, text: str) -> None:
    assert human_percent(ratio) == text


_NUMBER = r"(-?)(\d+(?:\.\d)?)"
_COUNT_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_DURATION_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse(text: str, units: dict[str, int]) -> Fraction:
    """The value a human format stands for, exactly."""
    match = re.fullmatch(_NUMBER + "(" + "|".join(units) + ")", text)
    assert match is not None, f"not a human format: {text!r}"
    sign, number, unit = match.groups()
    value = Fraction(number) * units[unit]
    return -value if sign else value


@given(st.integers())
def test_a_count_reads_back_exactly_below_1000_and_within_5_percent_above(count: int) -> None:
    text = human_count(count)
    back = parse(text, _COUNT_UNITS)
    if abs(count) < 1_000:
        assert back == count
    assert abs(back - count) <= abs(Fraction(count)) / 20


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_duration_reads_back_within_its_precision(ms: float) -> None:
    back = parse(human_duration(ms), _DURATION_UNITS)
    exact = Fraction(ms)
    assert abs(back - exact) <= max(Fraction(1, 20), abs(exact) / 20) * (1 + Fraction(1, 10**9))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_percentage_reads_back_within_half_a_point_and_never_rounds_to_0_or_100(
    ratio: float,
) -> None:
    text = human_percent(ratio)
    percent = ratio * 100
    if not math.isfinite(percent):
        assert text == NOT_AVAILABLE
        return
    back = parse(text, {"%": 1})
    assert abs(back - Fraction(percent)) <= Fraction(1, 2)
    if text == "100%":
        assert percent >= 100
    if text == "0%":
        assert percent <= 0


@given(st.one_of(st.none(), st.floats()), st.integers())
def test_the_formats_never_raise(value: float | None, count: int) -> None:
    assert human_duration(value)
    assert human_percent(value)
    assert human_count(count)


# --- the progress view ---------------------------------------------------------------------


def test_progress_is_the_architectures_json_with_exact_details() -> None:
    run = drive()
    view = progress_view(run.core, NOW_MS, state="distributing")

    assert list(view) == ["agent", "status", "progress", "details"]
    assert view["agent"] == AGENT_NAME == "task-distributor"
    assert view["status"] == "distributing"
    # 4 dispatches; queue times 100, 100, 100 ms (t5 not started); load CV of (1.0, 0.8)
    # is 0.1 / 0.9; deadlines: t1 met, t4 missed.
    assert view["progress"] == {
        "tasks_distributed": "4",
        "avg_queue_time": "100ms",
        "load_variance": "11%",
        "deadline_success": "50%",
    }
    details = view["details"]
    assert isinstance(details, dict)
    assert details["tasks"] == 6 and details["dispatched"] == 4 and details["completed"] == 1
    assert details["dead_lettered"] == {
        "MALFORMED": 0, "EXPIRED": 1, "MAX_ATTEMPTS": 0, "FAILED": 1,
        "NO_CAPABLE_AGENT": 0, "REJECTED": 0, "TOO_LARGE": 0,
    }  # fmt: skip
    assert (details["held"], details["in_flight"]) == (1, 2)
    assert details["agents"] == {"ready": 2, "total": 2}
    assert details["utilization"] == round((500 * 2 + 400) / (500 * 3), 4)
    assert details["load_cv"] == round(0.1 / 0.9, 4)
    assert details["queue_ms"] == {"mean": 100.0, "p50": 100, "p99": 100}
    assert details["dispatch_ms"] == {"mean": 75.0, "p50": 0, "p99": 300}
    assert details["deadline_success"] == 0.5
    assert details["at_ms"] == NOW_MS
    json.dumps(view, allow_nan=False)


def test_progress_of_an_empty_distributor_says_n_a_not_zero() -> None:
    core = Distributor(DistributorConfig())
    view = progress_view(core, 0, state=run_state(core, starting=False, draining=False))
    assert view["status"] == "idle"
    assert view["progress"] == {
        "tasks_distributed": "0",
        "avg_queue_time": NOT_AVAILABLE,
        "load_variance": "0%",
        "deadline_success": NOT_AVAILABLE,
    }
    json.dumps(view, allow_nan=False)


def test_run_state_and_a_bad_state() -> None:
    run = drive()
    assert run_state(run.core, starting=False, draining=False) == "distributing"
    assert run_state(run.core, starting=True, draining=True) == "starting"
    assert run_state(run.core, starting=False, draining=True) == "draining"
    with pytest.raises(TaskdError, match="status must be one of"):
        progress_view(run.core, NOW_MS, state="busy")  # type: ignore[arg-type]


def test_a_given_summary_is_used_as_is() -> None:
    run = drive()
    early = run.core.stats.summary(250)
    view = progress_view(run.core, NOW_MS, state="idle", summary=early)
    assert view["details"]["at_ms"] == 250  # type: ignore[index]


def test_summary_cache_recomputes_only_when_old_or_when_time_ran_back() -> None:
    run = drive()
    cache = SummaryCache(run.core.stats, max_age_ms=1_000)
    first = cache.at(1_000)
    assert cache.at(1_999) is first
    later = cache.at(2_000)
    assert later is not first and later.at_ms == 2_000
    assert cache.at(1_500).at_ms == 1_500
    assert SummaryCache(run.core.stats, max_age_ms=0).at(5).at_ms == 5
    with pytest.raises(TaskdError):
        SummaryCache(run.core.stats, max_age_ms=-1)


# --- the context view ----------------------------------------------------------------------


def test_context_has_volumes_agents_scheme_targets_constraints_and_strategy() -> None:
    run = drive()
    view = context_view(run.core, settings_for_views(), now_ms=NOW_MS)

    assert view["volumes"] == {
        "received": 6, "dispatched": 4, "completed": 1, "dead_lettered": 2, "held": 1,
        "held_by_priority": {"p0": 0, "p1": 0, "p2": 1, "p3": 0}, "behind": 0,
        "in_flight": 2, "intake_paused": False,
    }  # fmt: skip
    assert view["dispatcher"] is None  # no settings given: nothing claimed
    config = DispatcherConfig(prefetch_share=0.5, tenants={"acme": {"max_in_flight": 3}})
    shown = context_view(run.core, settings_for_views(), now_ms=NOW_MS, dispatcher=config)
    table = shown["dispatcher"]
    assert isinstance(table, dict)
    assert (table["prefetch_share"], table["tenants"]["acme"]["max_in_flight"]) == (0.5, 3)
    assert table == json.loads(json.dumps(table))  # JSON as it is
    agents = {agent["id"]: agent for agent in view["agents"]}  # type: ignore[attr-defined]
    assert agents["a"] == {
        "id": "a", "state": "READY", "capacity": 2, "slots": 2, "in_flight": 2, "load": 1.0,
        "task_types": None, "heartbeat_age_ms": 500,
        "skills": ["gpu"], "zone": "eu", "weight": 2.0, "cost_per_task": 0.0,
        "ewma_run_ms": 200.0, "ewma_success": 1.0, "labels": {},
    }  # fmt: skip
    assert (agents["b"]["in_flight"], agents["b"]["load"], agents["b"]["skills"]) == (0, 0.0, [])
    assert view["dead_letters"] == {reason.value: 0 for reason in DeadLetterReason} | {
        "EXPIRED": 1,
        "FAILED": 1,
    }
    breakdown = view["breakdown"]
    assert isinstance(breakdown, dict)
    assert (breakdown["keys"], breakdown["other"]) == (20, "other")
    assert breakdown["by_priority"]["p0"] == {
        "received": 1, "started": 1, "queue_ms_total": 100, "mean_queue_ms": 100.0,
        "completed": 1, "dead_lettered": 0,
    }  # fmt: skip
    assert breakdown["by_priority"]["p3"]["dead_lettered"] == 1  # t4 expired
    assert {name: c["received"] for name, c in breakdown["by_tenant"].items()} == {
        "acme": 1,
        "default": 5,
    }
    assert {name: c["dead_lettered"] for name, c in breakdown["by_type"].items()} == {"default": 2}
    assert view["priorities"] == {
        "levels": 4,
        "most_urgent": 0,
        "topics": [f"taskd.tasks.p{level}" for level in range(4)],
        "aging_ms": None,
        "escalation_ms": 0,
        "reserved_top_share": 0.0,
    }
    targets = view["targets"]
    assert isinstance(targets, dict)
    assert {name: (t["goal"], t["value"], t["met"]) for name, t in targets.items()} == {
        "dispatch_latency": ("< 50 ms", 300, False),
        "load_variance": ("< 10%", round(0.1 / 0.9, 4), False),
        "completion": ("> 99%", round(1 / 3, 4), False),
        "deadline_success": ("> 95%", 0.5, False),
        "utilization": ("> 80%", round(1_400 / 1_500, 4), True),
    }
    constraints = view["constraints"]
    assert isinstance(constraints, dict)
    assert constraints["max_held"] == 100_000 and constraints["resume_at"] == 80_000
    assert constraints["tenant_max_in_flight"] == {"acme": 5}
    assert constraints["retry_backoffs_ms"] == [1_000, 10_000, 60_000]
    assert constraints["max_agents"] == 64
    assert view["strategy"] == {
        "name": "least-connections",
        "late_binding": True,
        "zone_strict": False,
        "hash_load_factor": 1.25,
        "rules": [],
    }
    shown = json.dumps(view, allow_nan=False)
    assert "hunter2" not in shown and "secret-broker" not in shown and "user" not in shown


def test_agents_show_the_capacity_they_announced_beside_the_slots_this_instance_counts() -> None:
    # a announced 8 and the core counts 2 for it here (with prefetch, or a share of several
    # instances'); b's announcement is not known (it has no claim any more)
    announced = {"a": 8}
    view = context_view(drive().core, load_settings(), now_ms=NOW_MS, capacity_of=announced.get)
    agents = {agent["id"]: agent for agent in view["agents"]}  # type: ignore[attr-defined]
    assert (agents["a"]["capacity"], agents["a"]["slots"], agents["a"]["load"]) == (8, 2, 1.0)
    assert (agents["b"]["capacity"], agents["b"]["slots"]) == (None, 1)


def test_context_of_an_empty_distributor_has_no_judgement_without_figures() -> None:
    view = context_view(Distributor(DistributorConfig()), load_settings(), now_ms=0)
    assert view["agents"] == []
    targets = view["targets"]
    assert isinstance(targets, dict)
    assert targets["completion"]["met"] is None and targets["deadline_success"]["value"] is None
    json.dumps(view, allow_nan=False)


# --- metrics -------------------------------------------------------------------------------


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition, by (name, sorted labels)."""
    text = render_metrics(registry)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def render_metrics(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def fed_metrics(run: Run) -> tuple[CollectorRegistry, DispatcherMetrics]:
    """Metrics fed as the dispatcher would: arrivals, the core's actions, accepted results."""
    registry = CollectorRegistry()
    metrics = DispatcherMetrics(registry)
    for job in run.jobs.values():
        metrics.on_received(job)
    metrics.on_received(Job("t1", 0, 0, attempt=1))  # a retry coming back: not received again
    metrics.on_actions(run.actions)
    metrics.on_actions([Retry(run.jobs["t5"], 0, 1_000, None)])
    metrics.on_retry(2)
    metrics.on_dead_letter(DeadLetterReason.MALFORMED)
    metrics.on_result(run.jobs["t1"], ResultStatus.SUCCEEDED, started_ms=100, finished_ms=300)
    metrics.on_result(run.jobs["t2"], ResultStatus.FAILED, started_ms=100, finished_ms=400)
    metrics.on_result(run.jobs["t3"], ResultStatus.REJECTED, started_ms=0, finished_ms=0)
    metrics.refresh(run.core, NOW_MS)
    return registry, metrics


def test_counters_and_histograms_count_what_happened() -> None:
    registry, _ = fed_metrics(drive())
    got = samples(registry)

    assert got[("taskd_tasks_received_total", ())] == 6
    # t1 p0, t2 p1, t3 p2, t5 p3
    for level in range(4):
        assert got[("taskd_tasks_dispatched_total", (("priority", f"p{level}"),))] == 1
    results = {
        (dict(labels)["status"], dict(labels)["priority"]): value
        for (name, labels), value in got.items()
        if name == "taskd_results_total"
    }
    assert {key: value for key, value in results.items() if value} == {
        ("SUCCEEDED", "p0"): 1,
        ("FAILED", "p1"): 1,
        ("REJECTED", "p2"): 1,
    }
    assert got[("taskd_tasks_retried_total", (("tier", "0"),))] == 1
    assert got[("taskd_tasks_retried_total", (("tier", "2"),))] == 1
    dead = {reason.value: 0 for reason in DeadLetterReason} | {
        "EXPIRED": 1,
        "FAILED": 1,
        "MALFORMED": 1,
    }
    for reason, count in dead.items():
        assert got[("taskd_tasks_dead_lettered_total", (("reason", reason),))] == count
    assert got[("taskd_tasks_expired_total", ())] == 1

    # Dispatch latencies 0 ms (t1 p0, t2 p1, t3 p2) and 300 ms (t5 p3); queue times 100 ms
    # (t1 p0, t2 p1); runs 200 and 300 ms (the REJECTED one never ran); all of type "default".
    def latency(name: str, level: int, **labels: str) -> float:
        return got[(name, tuple(sorted({"priority": f"p{level}", **labels}.items())))]

    for level in range(3):
        assert latency("taskd_dispatch_latency_seconds_count", level) == 1
        assert latency("taskd_dispatch_latency_seconds_bucket", level, le="0.001") == 1
    assert latency("taskd_dispatch_latency_seconds_sum", 3) == pytest.approx(0.3)
    assert latency("taskd_dispatch_latency_seconds_bucket", 3, le="0.25") == 0
    assert latency("taskd_dispatch_latency_seconds_bucket", 3, le="0.5") == 1
    for level in (0, 1):
        assert latency("taskd_queue_time_seconds_count", level, type="default") == 1
        assert latency("taskd_queue_time_seconds_sum", level, type="default") == pytest.approx(0.1)
    assert ("taskd_queue_time_seconds_count", (("priority", "p2"), ("type", "default"))) not in got
    assert got[("taskd_run_time_seconds_count", (("type", "default"),))] == 2
    assert got[("taskd_run_time_seconds_sum", (("type", "default"),))] == pytest.approx(0.5)


def test_given_the_levels_every_priority_has_its_series_from_the_start() -> None:
    registry = CollectorRegistry()
    DispatcherMetrics(registry, levels=2)
    got = samples(registry)
    for level in ("p0", "p1"):
        assert got[("taskd_tasks_dispatched_total", (("priority", level),))] == 0
        for status in ResultStatus:
            key = ("taskd_results_total", (("priority", level), ("status", status.value)))
            assert got[key] == 0
    assert ("taskd_tasks_dispatched_total", (("priority", "p2"),)) not in got


def test_task_types_past_the_first_ones_seen_share_the_label_other() -> None:
    registry = CollectorRegistry()
    metrics = DispatcherMetrics(registry, max_types=2)
    for index, task_type in enumerate(["resize", "encode", "resize", "t3", "t4", "other"]):
        job = Job(f"t{index}", 1, 0, task_type=task_type)
        metrics.on_result(job, ResultStatus.SUCCEEDED, started_ms=10, finished_ms=20)
    got = samples(registry)
    runs = {
        dict(labels)["type"]: value
        for (name, labels), value in got.items()
        if name == "taskd_run_time_seconds_count"
    }
    assert runs == {"resize": 2, "encode": 1, "other": 3}
    assert metrics.types.kept == {"resize", "encode"}


def test_inversions_and_deadlines_are_counters_that_follow_the_statistics() -> None:
    run = drive()
    registry, metrics = fed_metrics(run)
    got = samples(registry)
    assert got[("taskd_priority_inversions_total", ())] == 0
    # t1 started in time; t4 expired unstarted past its deadline
    assert got[("taskd_deadlines_total", (("outcome", "met"),))] == 1
    assert got[("taskd_deadlines_total", (("outcome", "missed"),))] == 1
    families = {family.name: family.type for family in text_string_to_metric_families(
        render_metrics(registry))}  # fmt: skip
    assert families["taskd_priority_inversions"] == "counter"
    assert families["taskd_deadlines"] == "counter"
    metrics.refresh(run.core, NOW_MS)  # again: nothing new is counted twice
    again = samples(registry)
    assert again[("taskd_deadlines_total", (("outcome", "missed"),))] == 1


def test_no_gauge_holds_a_count_since_start() -> None:
    """Counts are counters (``rate()`` and ``increase()`` work on them); gauges are levels."""
    registry, metrics = fed_metrics(drive())
    metrics.on_shards(1, 2)
    gauges = {
        family.name
        for family in text_string_to_metric_families(render_metrics(registry))
        if family.type == "gauge" and not family.name.endswith("_created")  # counters' starts
    }
    assert gauges == {
        "taskd_queue_depth", "taskd_in_flight", "taskd_intake_paused", "taskd_agents_capacity",
        "taskd_agents_in_flight", "taskd_agents_utilization", "taskd_agents",
        "taskd_load_imbalance", "taskd_deadline_success_ratio", "taskd_shards_owned",
        "taskd_shards", "taskd_desired_agents",
    }  # fmt: skip


def test_refresh_sets_every_gauge_from_the_distributor() -> None:
    registry, _ = fed_metrics(drive())
    got = samples(registry)

    for level, depth in enumerate((0, 0, 1, 0)):
        assert got[("taskd_queue_depth", (("priority", f"p{level}"),))] == depth
    assert got[("taskd_in_flight", ())] == 2
    assert got[("taskd_agents", (("state", "READY"),))] == 2
    for state in ("JOINING", "DRAINING", "SUSPECT", "DOWN"):
        assert got[("taskd_agents", (("state", state),))] == 0
    assert got[("taskd_agents_capacity", (("agent", "a"),))] == 2
    assert got[("taskd_agents_capacity", (("agent", "b"),))] == 1
    assert got[("taskd_agents_in_flight", (("agent", "a"),))] == 2
    assert got[("taskd_agents_in_flight", (("agent", "b"),))] == 0
    assert got[("taskd_agents_utilization", (("agent", "a"),))] == 1.0
    assert got[("taskd_agents_utilization", (("agent", "b"),))] == 0.0
    assert got[("taskd_load_imbalance", ())] == pytest.approx(1.0)  # loads 1 and 0 now
    assert got[("taskd_deadline_success_ratio", ())] == 0.5
    assert got[("taskd_intake_paused", ())] == 0


def test_an_agent_gone_down_leaves_the_per_agent_series() -> None:
    run = drive()
    registry, metrics = fed_metrics(run)
    later_ms = 11_000  # b silent for more than down_after_ms; a still beating
    later = beat("a", 2, "gpu", zone="eu", weight=2.0, sent_ms=later_ms)
    run.core.handle([HeartbeatReceived(later)], later_ms)
    run.core.tick(later_ms)
    metrics.refresh(run.core, later_ms, summary=SummaryCache(run.core.stats).at(later_ms))
    got = samples(registry)

    assert got[("taskd_agents", (("state", "DOWN"),))] == 1
    assert got[("taskd_agents", (("state", "READY"),))] == 1
    assert not [key for key in got if ("agent", "b") in key[1]]
    assert got[("taskd_agents_capacity", (("agent", "a"),))] == 2
    assert got[("taskd_load_imbalance", ())] == 0.0  # one READY agent


def test_no_deadline_decided_yet_is_nan_not_a_ratio() -> None:
    registry = CollectorRegistry()
    DispatcherMetrics(registry).refresh(Distributor(DistributorConfig()), 0)
    assert math.isnan(samples(registry)[("taskd_deadline_success_ratio", ())])
    assert samples(registry)[("taskd_load_imbalance", ())] == 0.0


def test_dispatcher_and_agent_metrics_share_a_registry_without_a_name_clash() -> None:
    registry = CollectorRegistry()
    DispatcherMetrics(registry)
    AgentMetrics(registry, capacity=4)
    names = {family.name for family in text_string_to_metric_families(render_metrics(registry))}
    assert {"taskd_agents_capacity", "taskd_agent_capacity", "taskd_tasks_received"} <= names
    assert {"taskd_results", "taskd_agent_results"} <= names


@pytest.mark.parametrize(
    ("loads", "cv"), [([], 0.0), ([0.0, 0.0], 0.0), ([0.5], 0.0), ([1.0, 0.0], 1.0)]
)
def test_load_cv(loads: list[float], cv: float) -> None:
    assert load_cv(loads) == cv


# --- the HTTP server -----------------------------------------------------------------------


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def served_views(run: Run) -> tuple[StatusServer, CollectorRegistry]:
    registry, _ = fed_metrics(run)
    settings = settings_for_views()
    server = StatusServer(
        "127.0.0.1",
        0,
        status=lambda: progress_view(run.core, NOW_MS, state="distributing"),
        context=lambda: context_view(run.core, settings, now_ms=NOW_MS),
        registry=registry,
    )
    return server, registry


Answers = dict[str, tuple[int, str, str]]
"""Path -> (HTTP status, content type, body)."""


async def ask(server: StatusServer, *paths: str) -> tuple[int, Answers]:
    """Start the server, GET each path, stop it: the port it had, and the answers."""
    await server.start()
    answers: Answers = {}
    try:
        port = server.port
        async with aiohttp.ClientSession() as session:
            for path in paths:
                async with session.get(server.url + path) as response:
                    kind = response.headers.get("Content-Type", "")
                    answers[path] = (response.status, kind, await response.text())
    finally:
        await server.stop()
    return port, answers


def test_the_server_answers_every_view_on_a_free_port() -> None:
    run = drive()
    server, _ = served_views(run)

    port, answers = asyncio.run(ask(server, "/metrics", "/status", "/context", "/", "/nowhere"))

    assert port > 0 and refused(port)
    status, kind, text = answers["/metrics"]
    assert (status, kind) == (200, METRICS_CONTENT_TYPE)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"taskd_tasks_received", "taskd_queue_depth", "taskd_dispatch_latency_seconds"} <= names
    status, kind, text = answers["/status"]
    assert (status, kind.split(";")[0]) == (200, "application/json")
    assert json.loads(text) == progress_view(run.core, NOW_MS, state="distributing")
    status, _, text = answers["/context"]
    assert status == 200
    assert json.loads(text) == context_view(run.core, settings_for_views(), now_ms=NOW_MS)
    status, kind, page = answers["/"]
    assert (status, kind.split(";")[0]) == (200, "text/html")
    assert "<script>" in page and 'view("status")' in page and 'view("context")' in page
    local = page.replace('"http://www.w3.org/2000/svg"', "")  # a namespace, not an address
    assert "http://" not in local and "https://" not in local and " src=" not in page
    assert "href=" not in page and "@import" not in page and "url(" not in page
    assert answers["/nowhere"][0] == 404


def test_the_server_reports_a_busy_port_and_its_state() -> None:
    run = drive()
    first, registry = served_views(run)
    with pytest.raises(TaskdError, match="not started"):
        _ = first.port

    async def scenario() -> None:
        await first.start()
        try:
            with pytest.raises(TaskdError, match="already started"):
                await first.start()
            second = StatusServer(
                "127.0.0.1", first.port, status=dict, context=dict, registry=registry
            )
            with pytest.raises(ConfigError, match="cannot serve the dispatcher's HTTP views"):
                await second.start()
            await second.stop()  # never started: a no-op
        finally:
            await first.stop()
        await first.stop()  # twice: a no-op

    asyncio.run(scenario())


# --- autoscaling signal and bottleneck --------------------------------------------------------


def test_desired_agents_follow_the_scalers_pools_and_forget_those_gone() -> None:
    registry = CollectorRegistry()
    metrics = DispatcherMetrics(registry)
    scaler = Autoscaler(ScalingConfig(cooldown_ms=0))
    gpu = (frozenset({"gpu"}), None)
    metrics.on_scaling(scaler.observe(0, [], {gpu: Demand(6, 6)}))
    assert samples(registry)[("taskd_desired_agents", (("pool", "gpu"),))] == 1
    assert scale_view(scaler)["pools"] == {
        "gpu": {
            "desired": 1,
            "current": 0,
            "raw": 1,
            "inputs": {
                "rate_per_s": 0.0,
                "run_ms": 1000.0,
                "backlog": 6.0,
                "in_flight": 0,
                "slots_per_agent": 1.0,
            },
        }
    }
    metrics.on_scaling(scaler.observe(1_000, [], {gpu: Demand(6, 0)}))
    assert not any(name == "taskd_desired_agents" for name, _ in samples(registry))


def test_the_loop_load_is_cpu_over_wall_time_in_its_window() -> None:
    load = LoopLoad(window_s=10)
    assert load.busy() is None
    for second in range(30):
        load.sample(float(second), 0.5 * second if second < 15 else 7.5 + 0.95 * (second - 15))
    assert load.busy() == pytest.approx(0.95)
    core = drive().core
    found = bottleneck_of(core, loop_busy=load.busy())
    progress = progress_view(core, NOW_MS, state="distributing", bottleneck=found)
    assert progress["details"]["bottleneck"]["kind"] == "dispatcher_cpu"  # type: ignore[index]
