"""A live dispatcher and agent on the real broker: ``/status`` and ``/metrics`` give the same
counts, and the Grafana dashboard and the alert rules query only metrics they export.

The run: tasks that succeed (two priorities, some with a deadline), one that fails for good,
one retried once, one expired before dispatch and one malformed record.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streams.core.model import DeadLetterReason
from streams.settings import Settings
from streams.wire import Task
from streams.worker import Agent, FatalError, RetryableError
from tests.adapters.test_dispatcher_support import (
    dispatcher_config,
    running_dispatcher,
    submit,
    until,
    with_state,
)
from tests.adapters.test_worker_support import WAIT_S, config, running
from tests.test_monitoring import (
    PROMETHEUS_OWN,
    TARGET_LABELS,
    alert_rules,
    dashboard_queries,
    queried_metrics,
)

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
"""The sample names Prometheus stores for a family of each type."""
OK, OK_P0, WITH_DEADLINE = 6, 2, 3


def work(task: Task) -> bytes:
    """``fail``: fails for good; ``retry``: fails its first attempt only."""
    if task.payload == b"fail":
        raise FatalError("cannot do it")
    if task.payload == b"retry" and task.attempt == 0:
        raise RetryableError("not yet")
    return b"done"


async def _scrape(session: aiohttp.ClientSession, url: str) -> tuple[str, Series]:
    async with session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    series = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, series


def _sum(series: Series, name: str, **labels: str) -> float:
    wanted = frozenset(labels.items())
    return sum(value for (found, held), value in series.items() if found == name and wanted <= held)


def _by_label(series: Series, name: str, label: str) -> dict[str, float]:
    """The non-zero sums of ``name``'s series by the value of ``label``."""
    sums: dict[str, float] = {}
    for (found, held), value in series.items():
        labels = dict(held)
        if found == name and label in labels:
            sums[labels[label]] = sums.get(labels[label], 0) + value
    return {key: value for key, value in sums.items() if value}


def _exported(*texts: str) -> dict[str, set[str]]:
    """Sample name -> label names, of every family in the expositions (a labelled family with
    no series yet counts by its name; its labels are then unknown, so none are)."""
    exported: dict[str, set[str]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            labels = {name for sample in family.samples for name in sample.labels}
            for suffix in SUFFIXES.get(family.type, ("",)):
                held = labels | {"le"} if suffix == "_bucket" else labels - {"le"}
                exported.setdefault(family.name + suffix, set()).update(held)
    return exported


def test_status_and_metrics_agree_and_the_dashboard_queries_what_is_exported(
    topics: Settings, tmp_path: Path
) -> None:
    live = with_state(topics, tmp_path / "state").model_copy(update={"http_port": 0})
    agent = Agent(config(capacity=4, handlers={"work": work}), live)

    async def scenario() -> tuple[str, str, Series, dict[str, object]]:
        async with (
            running_dispatcher(live, dispatcher_config(web_enabled=True)) as dispatcher,
            running(agent) as started,
            aiohttp.ClientSession() as session,
        ):
            base = dispatcher.http_url
            assert base is not None
            far = int(time.time() * 1000) + 600_000
            await submit(live, OK - OK_P0 - WITH_DEADLINE)
            await submit(live, WITH_DEADLINE, deadline=far)
            await submit(live, OK_P0, priority=0)
            await submit(live, 1, payload=b"fail")
            await submit(live, 1, payload=b"retry")
            await submit(live, 1, deadline=1)  # long past: expires before dispatch
            await asyncio.to_thread(_produce_raw, live, live.topics.tasks(2), b"\x00not a task")
            text, series = await _until_settled(session, base)
            settled_ms = int(time.time() * 1000)
            await until(
                lambda: _status_since(dispatcher.status_view(), settled_ms),
                "the status counts every task (its figures are cached for a few seconds)",
            )
            status = dispatcher.status_view()
            _, series = await _scrape(session, base + "/metrics")
            ready = started.ready
            assert ready is not None
            agent_text, _ = await _scrape(session, f"http://127.0.0.1:{ready.metrics_port}/metrics")
            return text, agent_text, series, status

    text, agent_text, series, status = asyncio.run(scenario())

    details = status["details"]
    assert isinstance(details, dict)
    # what the run did, as /status says it ...
    assert details["tasks"] == OK + 3
    assert details["completed"] == OK + 1  # the retried one succeeded the second time
    assert details["dead_lettered"] == {reason.value: 0 for reason in DeadLetterReason} | {
        "FAILED": 1,
        "EXPIRED": 1,
        "MALFORMED": 1,
    }
    # ... and /metrics says the same
    assert _sum(series, "taskd_tasks_received_total") == details["tasks"]
    assert _sum(series, "taskd_tasks_dispatched_total") == details["dispatched"] == OK + 3
    assert _sum(series, "taskd_results_total", status="SUCCEEDED") == details["completed"]
    finished = {status: count for status, count in details["finished"].items() if count}
    assert _by_label(series, "taskd_results_total", "status") == finished
    dead_lettered = {reason: count for reason, count in details["dead_lettered"].items() if count}
    assert _by_label(series, "taskd_tasks_dead_lettered_total", "reason") == dead_lettered
    assert _sum(series, "taskd_tasks_retried_total") == 1
    assert _sum(series, "taskd_in_flight") == details["in_flight"] == 0
    assert _sum(series, "taskd_queue_depth") == details["held"] == 0
    assert _sum(series, "taskd_agents", state="READY") == details["agents"]["ready"] == 1
    assert _sum(series, "taskd_priority_inversions_total") == details["priority_inversions"] == 0
    assert _sum(series, "taskd_deadlines_total", outcome="met") == WITH_DEADLINE
    assert _sum(series, "taskd_deadlines_total", outcome="missed") == 1  # the expired one
    assert _sum(series, "taskd_deadline_success_ratio") == details["deadline_success"]
    assert _sum(series, "taskd_results_total", priority="p0") == OK_P0
    assert _sum(series, "taskd_queue_time_seconds_count", priority="p0", type="work") == OK_P0
    assert _sum(series, "taskd_shards_owned") == _sum(series, "taskd_shards") == live.shards

    # every metric the dashboard and the alerts query is exported, with the labels they use
    exported = _exported(text, agent_text)
    expressions = [expr for _, expr in dashboard_queries()]
    expressions += [rule["expr"] for rule in alert_rules()]
    for name, labels in queried_metrics(expressions).items():
        if name in PROMETHEUS_OWN:
            continue
        assert name in exported, f"{name} is queried but neither dispatcher nor agent exports it"
        unknown = labels - exported[name] - TARGET_LABELS
        assert not unknown, f"{name} has no label {sorted(unknown)}"


async def _until_settled(session: aiohttp.ClientSession, base: str) -> tuple[str, Series]:
    """The metrics once every task has ended (OK + 1 succeeded, 3 dead letters), nothing in
    flight."""
    deadline = time.monotonic() + WAIT_S
    while True:
        text, series = await _scrape(session, base + "/metrics")
        succeeded = _sum(series, "taskd_results_total", status="SUCCEEDED")
        dead = _sum(series, "taskd_tasks_dead_lettered_total")
        if succeeded >= OK + 1 and dead >= 3 and _sum(series, "taskd_in_flight") == 0:
            return text, series
        assert time.monotonic() < deadline, f"{succeeded} succeeded, {dead} dead letters"
        await asyncio.sleep(0.2)


def _status_since(view: dict[str, object], settled_ms: int) -> bool:
    """The status is idle and its figures were taken after the metrics settled."""
    details = view.get("details")
    return view.get("status") == "idle" and isinstance(details, dict) and (
        details["at_ms"] >= settled_ms)  # fmt: skip


def _produce_raw(settings: Settings, topic: str, value: bytes) -> None:
    producer = Producer(settings.kafka_config())
    producer.produce(topic, value, partition=0)
    assert producer.flush(WAIT_S) == 0
