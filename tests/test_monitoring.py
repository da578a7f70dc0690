"""The monitoring kit in ``deploy/``: Prometheus's config and alert rules, checked and unit-tested
with ``promtool``, and the Grafana dashboard, whose every query promtool parses.

promtool comes from ``scripts/promtool`` (a ``promtool`` on PATH, else Debian's ``prometheus``
package fetched without root into ``.cache/promtool/``). When it cannot be had the tests fail
with the reason: they never skip. That the dashboard and the rules only query metrics the
dispatcher and the agents export is checked against a live dispatcher's ``/metrics``
(``tests/adapters/test_metrics_agree.py``), with :func:`queried_metrics` from here.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = ROOT / "scripts" / "promtool"
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "taskd.json"

PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself for every target."""
TARGET_LABELS = frozenset({"instance", "job"})
"""Labels Prometheus adds to every scraped series."""

_GRAFANA_RANGES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}
_METRIC = re.compile(r"\b(taskd_[a-zA-Z0-9_]+|up)\b(?:\s*\{([^}]*)\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool (fetched on first use); fail the test when it cannot be had."""
    result = subprocess.run(
        [str(PROMTOOL), *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode == 2 and result.stderr.startswith("promtool: "):
        pytest.fail(f"promtool is needed and could not be had: {result.stderr.strip()}")
    return result


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard, Grafana's variables resolved."""
    found = []
    for panel in _panels(json.loads(path.read_text())["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in _GRAFANA_RANGES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """Every rule of every group of the rules file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def queried_metrics(expressions: list[str]) -> dict[str, set[str]]:
    """Metric name -> the label names the expressions select or group it by.

    A grouping clause (``sum by (priority) (rate(taskd_x[1m]))``) is credited to the first
    metric after it, which is how every query here is written."""
    used: dict[str, set[str]] = {}
    for expr in expressions:
        for match in _METRIC.finditer(expr):
            labels = used.setdefault(match[1], set())
            labels.update(_MATCHER.findall(match[2] or ""))
        for match in _GROUPING.finditer(expr):
            following = _METRIC.search(expr, match.end())
            if following is not None:
                names = {name.strip() for name in match[1].split(",") if name.strip()}
                used.setdefault(following[1], set()).update(names)
    return used


def test_the_prometheus_config_and_its_rules_pass_promtool() -> None:
    checked = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    rules = promtool("check", "rules", ALERTS)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout


def test_every_alert_fires_on_the_series_meant_to_fire_it() -> None:
    tested = promtool("test", "rules", PROMETHEUS / "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    firing = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    assert firing == {rule["alert"] for rule in alert_rules()}


def test_the_operators_alerts_are_there() -> None:
    """The alerts the operators asked for: backlog growing, DLQ rate, agents down, deadline
    misses, dispatcher down; each with a severity, a summary and a description."""
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {
        "TaskdBacklogGrowing",
        "TaskdDeadLettersHigh",
        "TaskdAgentsDown",
        "TaskdDeadlinesMissed",
        "TaskdDispatcherDown",
    } <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule, so that promtool parses it."""
    queries = dashboard_queries()
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_the_dashboard_shows_what_operators_watch() -> None:
    """Throughput and queue time per priority, backlog, in flight against capacity, the DLQ
    rate by reason, agents up and down, deadline misses."""
    queries = dashboard_queries()
    used = queried_metrics([expr for _, expr in queries])
    assert "priority" in used["taskd_results_total"]
    assert "priority" in used["taskd_queue_time_seconds_bucket"]
    assert "priority" in used["taskd_queue_depth"]
    assert {"taskd_in_flight", "taskd_agents_capacity"} <= set(used)
    assert "reason" in used["taskd_tasks_dead_lettered_total"]
    assert "state" in used["taskd_agents"]
    assert "outcome" in used["taskd_deadlines_total"]
    assert "up" in used
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "taskd"
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_queried_metrics_reads_selectors_and_groupings() -> None:
    used = queried_metrics(
        [
            'sum by (le, priority) (rate(taskd_x_bucket{type="a", le!=""}[1m]))',
            'max(taskd_y) - sum(up{job="taskd-agents"})',
        ]
    )
    assert used == {"taskd_x_bucket": {"le", "priority", "type"}, "taskd_y": set(), "up": {"job"}}
