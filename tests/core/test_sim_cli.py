"""``taskd simulate`` as a user types it: the table, the JSON, and bad scenario files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from streams.cli.simulate import simulate
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

app = typer.Typer()
app.command("simulate")(simulate)


@app.callback()
def _root() -> None:
    """A root like ``taskd``'s, so ``simulate`` is a subcommand as it is there."""


def small_quick(tmp_path: Path) -> Path:
    """The shipped quick scenario cut to 300 tasks."""
    text = (ROOT / "scenarios" / "quick.toml").read_text(encoding="utf-8")
    path = tmp_path / "quick.toml"
    path.write_text(text.replace("tasks = 2_000", "tasks = 300"), encoding="utf-8")
    return path


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, ["simulate", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_table_has_a_row_per_strategy(tmp_path: Path) -> None:
    output = invoke("--scenario", str(small_quick(tmp_path)))
    assert "quick: 300 tasks, seed 7, offered load 80%" in output
    for strategy in ("affinity", "least-connections", "consistent-hash", "random-push"):
        assert strategy in output
    assert "mean q ms" in output


def test_json_is_the_same_bytes_twice_and_holds_the_promised_keys(tmp_path: Path) -> None:
    path = str(small_quick(tmp_path))
    first = invoke("--scenario", path, "--json")
    assert first == invoke("--scenario", path, "--json")
    report = json.loads(first)
    assert (report["scenario"], report["seed"], report["tasks"]) == ("quick", 7, 300)
    assert list(report["results"]) == [
        "affinity",
        "least-connections",
        "power-of-two-choices",
        "consistent-hash",
        "round-robin-push",
        "random-push",
    ]
    for figures in report["results"].values():
        for key in (
            "tasks",
            "completed",
            "dead_lettered",
            "mean_queue_ms",
            "p50_queue_ms",
            "p99_queue_ms",
            "utilization",
            "load_cv",
            "deadline_success",
            "priority_inversions",
            "affinity_hit_rate",
            "max_load_ratio",
            "makespan_ms",
            "events",
        ):
            assert key in figures
        assert figures["completed"] + sum(figures["dead_lettered"].values()) == 300
    assert "wall" not in first


def test_strategies_given_on_the_command_line_replace_the_scenarios(tmp_path: Path) -> None:
    path = str(small_quick(tmp_path))
    report = json.loads(
        invoke("--scenario", path, "--json", "--strategy", "random", "--strategy", "weighted")
    )
    assert list(report["results"]) == ["random", "weighted"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("load = 0.8", "load = -0.8"), "arrivals.load"),
        (("speed = 2.0", "speeed = 2.0"), "agents[0].speeed: unknown key"),
        (('"random-push",', '"random-pull",'), "strategies[5]: unknown routing strategy"),
        (("share = 0.3", "share = 0.4"), "tasks: the shares must sum to 1"),
        (('distribution = "constant"', 'distribution = "pareto"'), "tasks[2].work.distribution"),
    ],
)
def test_a_bad_scenario_file_is_a_config_error_naming_file_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = small_quick(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        CliRunner().invoke(app, ["simulate", "--scenario", str(path)], catch_exceptions=False)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_a_missing_file_or_strategy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        CliRunner().invoke(
            app, ["simulate", "--scenario", str(tmp_path / "none.toml")], catch_exceptions=False
        )
    with pytest.raises(ConfigError, match="unknown routing strategy 'fastest'"):
        CliRunner().invoke(
            app,
            ["simulate", "--scenario", str(small_quick(tmp_path)), "--strategy", "fastest"],
            catch_exceptions=False,
        )
