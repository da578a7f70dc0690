"""The group as one instance sees it, from the instances' reports: the latest of each, the
stopped ones gone, the silent ones shown but not summed, the long-silent ones forgotten."""

from __future__ import annotations

from rich.console import Console

from streams.adapters.dispatcher.group import (
    FORGET_AFTER_MS,
    SILENT_AFTER_MS,
    STOPPED,
    GroupView,
)
from streams.cli.status import group_rows, render
from streams.wire import DispatcherStatus


def _entries(view: dict[str, object]) -> dict[str, dict[str, object]]:
    instances = view["instances"]
    assert isinstance(instances, list)
    return {entry["instance"]: entry for entry in instances}


def _totals(view: dict[str, object]) -> dict[str, object]:
    totals = view["totals"]
    assert isinstance(totals, dict)
    return totals


def _report(
    instance: str, sent_at: int, shards: tuple[int, ...], state: str = "idle"
) -> DispatcherStatus:
    return DispatcherStatus(
        instance=instance,
        state=state,
        shards=shards,
        tasks=10,
        dispatched=9,
        completed=8,
        dead_lettered=1,
        held=2,
        in_flight=1,
        sent_at=sent_at,
    )


def test_the_view_sums_the_latest_report_of_each_instance_heard_from() -> None:
    group = GroupView()
    reports = [_report("a:1", 100, (0, 1)), _report("b:2", 100, (2,)), _report("a:1", 50, (5,))]
    group.update(reports, 100)
    view = group.view(1_000)
    assert list(_entries(view)) == ["a:1", "b:2"]
    assert _totals(view) == {
        "tasks": 20,
        "dispatched": 18,
        "completed": 16,
        "dead_lettered": 2,
        "held": 4,
        "in_flight": 2,
        "instances": 2,
        "shards": [0, 1, 2],
    }


def test_a_stopped_instance_leaves_and_a_silent_one_is_shown_but_not_summed() -> None:
    group = GroupView()
    group.update(
        [_report("a:1", 100, (0,)), _report("b:2", 100, (1,)), _report("c:3", 100, (2,))], 100
    )
    later_ms = 200 + SILENT_AFTER_MS
    group.update([_report("a:1", 200, (), state=STOPPED), _report("b:2", 300, (1,))], later_ms)
    view = group.view(later_ms)
    entries = _entries(view)
    assert set(entries) == {"b:2", "c:3"}
    assert entries["c:3"]["silent"] and not entries["b:2"]["silent"]
    assert _totals(view)["instances"] == 1 and _totals(view)["shards"] == [1]
    group.update([], later_ms + FORGET_AFTER_MS)
    assert list(_entries(group.view(later_ms + FORGET_AFTER_MS))) == ["b:2"]


def test_ages_count_on_this_hosts_clock_whatever_the_senders_clock_says() -> None:
    group = GroupView()
    behind = 10 * SILENT_AFTER_MS  # the other host's clock is that far behind
    group.update([_report("far:1", 1_000, (0,))], 1_000 + behind)
    (entry,) = _entries(group.view(1_500 + behind)).values()
    assert entry["age_ms"] == 500 and not entry["silent"]


def test_taskd_status_shows_a_row_per_instance_and_the_sums_when_several_run() -> None:
    group = GroupView()
    group.update([_report("a:1", 100, (0,))], 100)
    assert group_rows(group.view(100)) == []
    group.update([_report("b:2", 100, (1,))], 100)
    rows = group_rows(group.view(100))
    assert [label for label, _ in rows] == ["instance a:1", "instance b:2", "group"]
    assert rows[-1][1] == "2 instances, 4 held, 2 in flight, 16 completed"


def test_taskd_status_names_the_types_waiting_for_an_agent_able_to_run_them() -> None:
    view = {"status": "idle", "details": {"held": 3, "held_without_capable_agent": {"ocr": 3}}}
    text = render_text(view)
    assert "waiting for an agent able to run them" in text and "ocr 3" in text
    assert "waiting for" not in render_text({"details": {"held_without_capable_agent": {}}})


def render_text(view: dict[str, object]) -> str:
    console = Console(width=200, record=True)
    console.print(render(view))
    return console.export_text()
