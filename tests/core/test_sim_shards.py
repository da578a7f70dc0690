"""Dispatcher shards in the simulator: the plan (which shard owns a task, which slots each
shard sees), work stealing, and the guarantees of a sharded run.

A sharded run keeps every guarantee of one distributor: no agent runs more tasks than its
slots summed over the shards, every task ends exactly once, and the same seed gives the same
bytes. One shard is the unsharded run, figure for figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from streams.cli.simulate import simulate as cli_simulate
from streams.core.model import Job
from streams.core.shares import share
from streams.core.sim import (
    OWN_AGENTS,
    SHARDINGS,
    SPLIT_SLOTS,
    SPLIT_SLOTS_EVEN,
    RunResult,
    ShardPlan,
    against_first,
    compare,
    parse_scenario,
    plan_steals,
    report_dict,
    report_json,
    scenario_from_toml,
    simulate,
    variant_table,
)
from streams.core.sim.sharding import murmur2, partition_of, range_owner, split_even
from streams.core.sim.workload import generate
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
LATE_BINDING = ["round-robin", "least-connections", "power-of-two-choices", "affinity"]


def fleet(**overrides: Any) -> dict[str, Any]:
    """A small fleet like fleet10k's (1-, 2- and 4-slot agents, three levels) at 90% load."""
    data: dict[str, Any] = {
        "name": "small-fleet",
        "seed": 5,
        "strategies": ["round-robin"],
        "lease_ms": 3_600_000,
        "health": {
            "heartbeat_interval_ms": 10_000,
            "suspect_after_ms": 30_000,
            "down_after_ms": 60_000,
        },
        "arrivals": {"process": "poisson", "load": 0.9, "tasks": 3_000},
        "agents": [
            {"name": "std", "count": 24, "capacity": 1, "speed": 1.0},
            {"name": "multi", "count": 12, "capacity": 2, "speed": 1.0},
            {"name": "big", "count": 4, "capacity": 4, "speed": 1.0},
        ],
        "tasks": [
            {"share": 0.1, "priority": 0, "work": {"distribution": "exponential", "mean": 0.3}},
            {
                "share": 0.6,
                "priority": 1,
                "work": {"distribution": "lognormal", "mean": 1.0, "sigma": 0.8},
            },
            {"share": 0.3, "priority": 2, "work": {"distribution": "exponential", "mean": 2.0}},
        ],
    }
    data.update(overrides)
    return data


def run(data: dict[str, Any], strategy: str = "round-robin") -> RunResult:
    scenario = parse_scenario(data)
    return simulate(scenario, strategy, generate(scenario))


def assert_sound(result: RunResult) -> None:
    """Nothing lost or ended twice; no agent over its slots summed over the shards."""
    tally = result.tally
    assert tally.duplicates == 0, "a task ended twice"
    assert result.accounted == result.tasks, (result.unfinished, tally.to_dict())
    assert tally.completed == result.summary.completed
    for agent in result.agents:
        assert agent.peak_running <= agent.capacity, agent
    # Late binding over shards: a dispatch never found every slot of its agent taken.
    assert tally.overbooked == 0
    assert tally.locally_queued == 0


# --- the plan ----------------------------------------------------------------------------


def test_murmur2_is_kafkas() -> None:
    """Known values of the Java client's ``Utils.murmur2`` (as signed 32-bit integers)."""
    expected = {
        b"": 275646681,
        b"21": -973932308,
        b"abc": 479470107,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
    }
    for data, signed in expected.items():
        assert murmur2(data) == signed % 2**32, data


def test_a_task_goes_to_its_keys_partition() -> None:
    keyed = Job(task_id="t1", priority=0, submitted_ms=0, affinity_key="tenant/7")
    plan = ShardPlan.of([("a", 1), ("b", 1)], 6, SPLIT_SLOTS)
    assert plan.instance_of(keyed) == partition_of("tenant/7", 6)
    plain = Job(task_id="t1", priority=0, submitted_ms=0)
    assert plan.instance_of(plain) == partition_of("t1", 6)
    assert ShardPlan.of([("a", 1)], 1, SPLIT_SLOTS).instance_of(plain) == 0
    # Two instances over six shards: the first owns shards 0-2, the second 3-5.
    pair = ShardPlan.of([("a", 1)], 6, SPLIT_SLOTS, instances=2)
    assert pair.instance_of(plain) == partition_of("t1", 6) // 3


@given(shards=st.integers(1, 200), instances=st.integers(1, 200))
def test_instances_own_contiguous_runs_of_shards_as_the_range_assignor_gives(
    shards: int, instances: int
) -> None:
    count = min(shards, instances)
    owners = [range_owner(shard, shards, count) for shard in range(shards)]
    assert owners == sorted(owners)
    assert set(owners) == set(range(count))
    sizes = [owners.count(instance) for instance in range(count)]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the first ones hold the extra shards


@given(
    slots=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    shards=st.integers(1, 50),
)
def test_split_even_divides_every_agent_and_balances_the_shards(
    slots: list[int], shards: int
) -> None:
    totals = [0] * shards
    for agent_slots, counts in zip(slots, split_even(slots, shards), strict=True):
        assert sum(counts) == agent_slots
        floor = agent_slots // shards
        assert all(count in (floor, floor + 1) for count in counts)
        for shard, count in enumerate(counts):
            totals[shard] += count
    assert max(totals) - min(totals) <= 1


@given(
    slots=st.lists(st.integers(1, 40), min_size=1, max_size=40),
    shards=st.integers(1, 30),
    instances=st.integers(1, 30),
    sharding=st.sampled_from(SHARDINGS),
)
def test_every_model_gives_each_agent_its_slots_exactly_once(
    slots: list[int], shards: int, instances: int, sharding: str
) -> None:
    agents = [(f"agent-{index}", count) for index, count in enumerate(slots)]
    count = min(shards, instances)
    plan = ShardPlan.of(agents, shards, sharding, count)
    assert plan.instances == count
    for agent_slots, shares in zip(slots, plan.shares, strict=True):
        assert sum(share for _, share in shares) == agent_slots
        assert all(share > 0 and 0 <= instance < count for instance, share in shares)
        assert len({instance for instance, _ in shares}) == len(shares)
        if sharding == OWN_AGENTS:
            assert len(shares) == 1
    assert sum(plan.totals()) == sum(slots)


def test_split_slots_is_the_live_rule() -> None:
    """Per shard as ``streams/core/shares.py`` divides it; per instance, the sum over the
    shards the instance owns."""
    agents = [(f"w-{index}", slots) for index, slots in enumerate([1, 2, 3, 4, 7, 9])]
    plan = ShardPlan.of(agents, 6, SPLIT_SLOTS, instances=2)
    for partition, ((_, slots), shares) in enumerate(zip(agents, plan.shares, strict=True)):
        owned = dict(shares)
        assert owned.get(0, 0) == share(partition, slots, {0, 1, 2}, 6)
        assert owned.get(1, 0) == share(partition, slots, {3, 4, 5}, 6)


def test_one_instance_sees_every_agent_whole_under_every_model() -> None:
    for sharding in SHARDINGS:
        for shards in (1, 8):
            plan = ShardPlan.of([("a", 1), ("b", 3), ("c", 8)], shards, sharding, instances=1)
            assert plan.shares == (((0, 1),), ((0, 3),), ((0, 8),))


def test_fragmentation_one_slot_agents_go_whole_to_one_shard() -> None:
    """With fewer slots than shards, split-slots-even gives each slot to one shard, in turn;
    the live rule by a hash of the agent's id, so the totals spread."""
    agents = [(f"w-{index}", 1) for index in range(10)]
    even = ShardPlan.of(agents, 4, SPLIT_SLOTS_EVEN)
    assert [shares[0][0] for shares in even.shares] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert even.totals() == [3, 3, 2, 2]
    live = ShardPlan.of(agents, 4, SPLIT_SLOTS)
    assert all(len(shares) == 1 for shares in live.shares)
    assert sum(live.totals()) == 10


def test_an_unknown_model_or_a_bad_count_is_refused() -> None:
    with pytest.raises(ConfigError):
        ShardPlan.of([("a", 1)], 2, "round-robin")
    with pytest.raises(ConfigError):
        ShardPlan.of([("a", 1)], 0, SPLIT_SLOTS)
    with pytest.raises(ConfigError, match="dispatcher_instances"):
        ShardPlan.of([("a", 1)], 4, SPLIT_SLOTS, instances=5)


# --- work stealing -----------------------------------------------------------------------


@given(loads=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30))
def test_steals_never_exceed_a_thiefs_room_or_a_victims_tasks(
    loads: list[tuple[int, int]],
) -> None:
    free = [f for f, _ in loads]
    held = [h for _, h in loads]
    steals = plan_steals(free, held)
    taken = [0] * len(loads)
    given_ = [0] * len(loads)
    for steal in steals:
        assert steal.count > 0
        assert held[steal.thief] == 0 and free[steal.thief] > 0
        assert held[steal.victim] > 0
        taken[steal.thief] += steal.count
        given_[steal.victim] += steal.count
    assert all(t <= f for t, f in zip(taken, free, strict=True))
    assert all(g <= h for g, h in zip(given_, held, strict=True))
    # Nothing left on the table: either every room is used or every victim emptied.
    room = sum(f for f, h in loads if h == 0)
    assert sum(taken) == min(room, sum(held))


# --- runs --------------------------------------------------------------------------------


def test_one_shard_is_the_unsharded_run_byte_for_byte() -> None:
    plain = parse_scenario(fleet())
    explicit = parse_scenario(fleet(dispatcher_shards=1, sharding=OWN_AGENTS, steal_ms=10))
    assert report_json(compare(plain)) == report_json(compare(explicit))


def test_a_variant_of_one_shard_has_the_figures_of_the_plain_run() -> None:
    plain = compare(parse_scenario(fleet()))
    varied = compare(parse_scenario(fleet(variants=[{"name": "one", "dispatcher_shards": 1}])))
    assert varied.results[0].label == "one / round-robin"
    plain_figures = report_dict(plain)["results"]["round-robin"]  # type: ignore[index]
    varied_figures = report_dict(varied)["results"]["one / round-robin"]  # type: ignore[index]
    for key, value in plain_figures.items():
        assert varied_figures[key] == value, key


@pytest.mark.parametrize("sharding", SHARDINGS)
@pytest.mark.parametrize(("instances", "steal_ms"), [(0, 0), (0, 20), (3, 0), (3, 20)])
def test_a_sharded_run_keeps_the_guarantees(sharding: str, instances: int, steal_ms: int) -> None:
    data = fleet(
        dispatcher_shards=8, dispatcher_instances=instances, sharding=sharding, steal_ms=steal_ms
    )
    result = run(data)
    assert_sound(result)
    assert result.finished
    assert (result.shards, result.instances) == (8, instances or 8)
    if steal_ms:
        assert result.tally.stolen > 0


def test_sharding_costs_wait_and_stealing_wins_most_of_it_back() -> None:
    """The pooling loss: at 90% load a shard waits where the whole fleet would not."""
    data = fleet(
        variants=[
            {"name": "global", "dispatcher_shards": 1},
            {"name": "8 shards", "dispatcher_shards": 8},
            {"name": "8 shards, stealing", "dispatcher_shards": 8, "steal_ms": 10},
        ]
    )
    glob, sharded, stealing = compare(parse_scenario(data)).results
    for result in (glob, sharded, stealing):
        assert_sound(result)
    waits = [r.summary.mean_queue_ms or 0.0 for r in (glob, sharded, stealing)]
    assert waits[1] > waits[0]
    assert waits[2] < waits[1]
    assert glob.cross_shard_inversions == 0
    assert sharded.cross_shard_inversions > 0
    assert stealing.cross_shard_inversions < sharded.cross_shard_inversions


def test_the_same_seed_prints_the_same_json_for_a_sharded_run() -> None:
    scenario = parse_scenario(fleet(dispatcher_shards=5, steal_ms=20))
    first = report_json(compare(scenario))
    assert first == report_json(compare(scenario))
    assert first != report_json(compare(replace(scenario, seed=6)))
    assert '"cross_shard_inversions"' in first


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    strategy=st.sampled_from(LATE_BINDING),
    shards=st.integers(1, 6),
    instances=st.integers(0, 6),
    sharding=st.sampled_from(SHARDINGS),
    steal_ms=st.sampled_from([0, 5, 50]),
    capacity=st.integers(1, 5),
    count=st.integers(1, 6),
    load=st.floats(0.3, 1.3),
    failure=st.floats(0.0, 0.3),
    crash_at_ms=st.one_of(st.none(), st.integers(0, 4_000)),
)
def test_any_small_sharded_scenario_keeps_the_guarantees(
    seed: int,
    strategy: str,
    shards: int,
    instances: int,
    sharding: str,
    steal_ms: int,
    capacity: int,
    count: int,
    load: float,
    failure: float,
    crash_at_ms: int | None,
) -> None:
    crashing: dict[str, Any] = {"name": "c", "count": 1, "capacity": capacity, "speed": 1.0}
    if crash_at_ms is not None:
        crashing.update(crash_at_ms=crash_at_ms, recover_at_ms=crash_at_ms + 3_000)
    data = fleet(
        seed=seed,
        dispatcher_shards=shards,
        dispatcher_instances=min(instances, shards),
        sharding=sharding,
        steal_ms=steal_ms,
        retry_backoffs_ms=[100, 500],
        health={"heartbeat_interval_ms": 500, "suspect_after_ms": 1_000, "down_after_ms": 2_000},
        arrivals={"process": "poisson", "load": load, "tasks": 150},
        agents=[
            {
                "name": "a",
                "count": count,
                "capacity": capacity,
                "speed": 1.0,
                "failure_probability": failure,
            },
            crashing,
        ],
    )
    result = run(data, strategy)
    tally = result.tally
    assert tally.duplicates == 0
    assert result.accounted == result.tasks
    assert result.finished
    for agent in result.agents:
        assert agent.peak_running <= agent.capacity, agent
    assert tally.overbooked == 0


# --- scenarios ---------------------------------------------------------------------------


def test_variants_are_parsed_with_the_scenarios_defaults() -> None:
    scenario = parse_scenario(
        fleet(
            dispatcher_shards=4,
            sharding=OWN_AGENTS,
            variants=[{"name": "a"}, {"name": "b", "dispatcher_shards": 2, "steal_ms": 5}],
        )
    )
    first, second = scenario.variants
    assert (first.dispatcher_shards, first.sharding, first.steal_ms) == (4, OWN_AGENTS, 0)
    assert (second.dispatcher_shards, second.sharding, second.steal_ms) == (2, OWN_AGENTS, 5)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"dispatcher_shards": 0}, "dispatcher_shards"),
        ({"sharding": "by-zone"}, "sharding"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants"),
        ({"variants": [{"name": "a", "shards": 2}]}, "variants[0].shards"),
    ],
)
def test_bad_shard_settings_name_their_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(fleet(**overrides))


def test_the_fleet10k_scenario_parses_and_a_tenth_of_it_keeps_the_guarantees() -> None:
    """The shipped scenario (10,000 agents) cut to 1,000 agents, 10 shards, 5,000 tasks."""
    scenario = scenario_from_toml((ROOT / "scenarios" / "fleet10k.toml").read_text("utf-8"))
    assert sum(group.count for group in scenario.agents) == 10_000
    assert {v.dispatcher_shards for v in scenario.variants} == {1, 100}
    small = replace(
        scenario,
        agents=tuple(replace(group, count=group.count // 10) for group in scenario.agents),
        arrivals=replace(
            scenario.arrivals, tasks=5_000, rate_per_s=scenario.arrivals.rate_per_s / 10
        ),
        variants=tuple(
            replace(v, dispatcher_shards=min(v.dispatcher_shards, 10)) for v in scenario.variants
        ),
    )
    report = compare(small)
    assert len(report.results) == len(scenario.variants)
    for result in report.results:
        assert_sound(result)
        assert result.finished


# --- the steady state and the comparison of variants --------------------------------------


def test_the_steady_state_counts_only_the_tasks_submitted_after_the_warmup() -> None:
    arrivals_ms = 3_000 / parse_scenario(fleet()).arrivals.rate_per_s * 1000
    whole = run(fleet())
    steady = run(fleet(warmup_ms=int(arrivals_ms / 2)))
    assert whole.steady is not None and steady.steady is not None
    assert whole.steady.tasks == whole.tasks  # no warm-up: every task
    assert 0 < steady.steady.tasks < whole.tasks
    assert sum(level.count for level in steady.steady.by_level) == steady.steady.tasks
    # The warm-up is what the fleet spends filling up: after it, it is busier.
    assert steady.steady.utilization > whole.arrivals_utilization
    assert 0.8 < steady.steady.utilization < 0.97


def test_the_variants_table_has_a_row_per_variant_and_the_json_their_shape() -> None:
    data = fleet(
        warmup_ms=1_000,
        variants=[
            {"name": "global", "dispatcher_shards": 1},
            {"name": "4 shards", "dispatcher_shards": 4, "steal_ms": 20},
        ],
    )
    report = compare(parse_scenario(data))
    shaped = variant_table(report)
    assert shaped is not None
    headers, rows = shaped
    assert headers[:5] == ["variant", "shards", "instances", "sharding", "steal ms"]
    assert [row[0] for row in rows] == ["global / round-robin", "4 shards / round-robin"]
    assert rows[1][1:5] == ["4", "4", SPLIT_SLOTS, "20"]
    figures = report_dict(report)["results"]["4 shards / round-robin"]  # type: ignore[index]
    assert figures["dispatcher_shards"] == 4
    assert figures["dispatcher_instances"] == 4
    assert figures["steal_ms"] == 20
    assert figures["steady"]["warmup_ms"] == 1_000
    lines = against_first(report)
    assert len(lines) == 1 and lines[0].startswith("4 shards / round-robin: mean wait")
    assert variant_table(compare(parse_scenario(fleet()))) is None


def test_runs_in_worker_processes_print_the_same_bytes(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "fleet10k.toml").read_text("utf-8")
    small = (
        text.replace("count = 6_000", "count = 60")
        .replace("count = 3_000", "count = 30")
        .replace("count = 1_000", "count = 10")
        .replace("tasks = 360_000", "tasks = 1_500")
        .replace("dispatcher_shards = 100", "dispatcher_shards = 5")
        .replace("dispatcher_instances = 10", "dispatcher_instances = 2")
        .replace("warmup_ms = 10_000", "warmup_ms = 2_000")
    )
    path = tmp_path / "fleet.toml"
    path.write_text(small, encoding="utf-8")
    app = typer.Typer()
    app.command("simulate")(cli_simulate)
    app.callback()(lambda: None)
    outputs = []
    for jobs in ("1", "2"):
        result = CliRunner().invoke(app, ["simulate", "-s", str(path), "--json", "-j", jobs])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert outputs[0] == outputs[1]
    table = CliRunner().invoke(app, ["simulate", "-s", str(path)]).output
    assert "the variants, steady state" in table
    assert "100 inst, split, steal 10ms / round-robin: mean wait" in table


def test_a_sharded_run_does_not_depend_on_the_hash_seed_of_the_process() -> None:
    """Byte for byte across processes: no set or dict of str decides a shard, a steal or an
    order of events."""
    code = (
        "import json, sys; from streams.core.sim import parse_scenario, compare, report_json;"
        "print(report_json(compare(parse_scenario(json.loads(sys.argv[1])))))"
    )
    data = fleet(
        arrivals={"process": "poisson", "load": 0.9, "tasks": 600},
        dispatcher_shards=4,
        steal_ms=20,
        variants=[{"name": "split"}, {"name": "own", "sharding": OWN_AGENTS}],
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, json.dumps(data)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert '"stolen"' in outputs.pop()
