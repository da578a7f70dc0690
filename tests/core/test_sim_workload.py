"""The generated workload: deterministic from the seed, and shaped as the scenario says."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.sim import Arrival, Arrivals, generate, parse_scenario
from streams.core.sim.workload import arrival_times


def scenario_data(**arrivals: object) -> dict[str, Any]:
    return {
        "seed": 5,
        "arrivals": {"rate_per_s": 50.0, "tasks": 2_000, **arrivals},
        "agents": [{"name": "a", "count": 2, "capacity": 2, "speed": 1.0}],
        "tasks": [
            {
                "share": 0.25,
                "type": "urgent",
                "priority": 0,
                "work": {"distribution": "constant", "mean": 0.3},
                "deadline_ms": 1_500,
                "tenants": ["x", "y"],
            },
            {
                "share": 0.75,
                "type": "bulk",
                "priority": 2,
                "work": {"distribution": "lognormal", "mean": 2.0, "sigma": 0.5},
                "ttl_ms": 9_000,
                "required_skills": ["s"],
                "zone": "eu",
                "affinity_keys": 100,
                "affinity": "zipf",
                "zipf_exponent": 1.3,
                "max_attempts": 5,
            },
        ],
    }


def workload(data: dict[str, Any]) -> tuple[Arrival, ...]:
    return generate(parse_scenario(data))


def test_the_same_seed_gives_the_same_workload_and_another_seed_another() -> None:
    data = scenario_data()
    first = workload(data)
    assert first == workload(data)
    data["seed"] = 6
    assert workload(data) != first


def test_tasks_carry_their_class() -> None:
    arrivals = workload(scenario_data())
    assert len(arrivals) == 2_000
    assert len({a.job.task_id for a in arrivals}) == 2_000
    for arrival in arrivals:
        job = arrival.job
        assert job.submitted_ms == arrival.at_ms
        if job.task_type == "urgent":
            assert (job.priority, job.deadline_ms, job.expires_ms) == (
                0,
                arrival.at_ms + 1_500,
                None,
            )
            assert job.tenant in {"x", "y"}
            assert job.affinity_key is None
            assert arrival.work == 0.3
        else:
            assert (job.priority, job.deadline_ms, job.expires_ms) == (
                2,
                None,
                arrival.at_ms + 9_000,
            )
            assert job.required_skills == frozenset({"s"})
            assert (job.zone, job.max_attempts, job.cost) == ("eu", 5, 2.0)
            assert job.affinity_key is not None and job.affinity_key.startswith("bulk/")


def test_the_mix_follows_the_shares_and_the_work_its_distribution() -> None:
    arrivals = workload(scenario_data(tasks=20_000))
    types = Counter(a.job.task_type for a in arrivals)
    # Binomial(20000, 0.25): sd 61, so 0.25 +- 0.012 is beyond 4 sd.
    assert types["urgent"] / 20_000 == pytest.approx(0.25, abs=0.012)
    bulk = [a.work for a in arrivals if a.job.task_type == "bulk"]
    # Lognormal mean 2, sigma 0.5: sd 1.07, standard error 0.009 on 15,000 samples.
    assert statistics.fmean(bulk) == pytest.approx(2.0, abs=0.05)
    assert statistics.fmean(math.log(w) for w in bulk) == pytest.approx(
        math.log(2) - 0.125, abs=0.02
    )


def test_zipf_keys_favour_the_first_ranks() -> None:
    arrivals = workload(scenario_data(tasks=20_000))
    keys = Counter(a.job.affinity_key for a in arrivals if a.job.affinity_key)
    total = sum(keys.values())
    harmonic = sum(rank**-1.3 for rank in range(1, 101))
    # rank k has probability k**-1.3 / H: rank 1 about 37% of the keyed tasks.
    assert keys["bulk/1"] / total == pytest.approx(1 / harmonic, abs=0.02)
    assert keys["bulk/1"] > keys["bulk/2"] > keys["bulk/10"]
    assert len(keys) <= 100


def test_uniform_keys_spread_evenly() -> None:
    data = scenario_data(tasks=20_000)
    data["tasks"][1]["affinity"] = "uniform"
    del data["tasks"][1]["zipf_exponent"]
    keys = Counter(a.job.affinity_key for a in workload(data) if a.job.affinity_key)
    assert len(keys) == 100
    assert max(keys.values()) < 2 * min(keys.values())


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    times = list(arrival_times(Arrivals("poisson", 50.0, tasks=20_000), random.Random(1)))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Mean gap 20 ms; exponential gaps have sd 20 ms, so the mean of 20,000 has sd 0.14 ms.
    assert statistics.fmean(gaps) == pytest.approx(20.0, abs=0.6)
    assert statistics.pstdev(gaps) == pytest.approx(20.0, abs=1.0)


def test_constant_arrivals_are_evenly_spaced() -> None:
    times = list(arrival_times(Arrivals("constant", 4.0, tasks=5), random.Random(1)))
    assert times == [250, 500, 750, 1000, 1250]


def test_bursts_arrive_together_at_the_same_mean_rate() -> None:
    arrivals = Arrivals("bursts", 100.0, tasks=10_000, burst_size=10)
    times = list(arrival_times(arrivals, random.Random(2)))
    sizes = Counter(times)
    assert all(size % 10 == 0 for size in sizes.values())
    # 1,000 bursts at 10/s: about 100 s, sd about 3 s.
    assert times[-1] == pytest.approx(100_000, rel=0.1)


def test_a_duration_bounds_the_arrivals_instead_of_a_count() -> None:
    data = scenario_data(duration_ms=10_000)
    del data["arrivals"]["tasks"]
    arrivals = workload(data)
    assert all(a.at_ms < 10_000 for a in arrivals)
    assert len(arrivals) == pytest.approx(500, abs=100)  # Poisson(500): sd 22


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    process=st.sampled_from(["poisson", "constant", "bursts"]),
    rate=st.floats(0.1, 1_000.0),
    tasks=st.integers(1, 300),
)
def test_any_workload_is_ordered_and_complete(
    seed: int, process: str, rate: float, tasks: int
) -> None:
    data = scenario_data(rate_per_s=rate, tasks=tasks, process=process)
    data["seed"] = seed
    if process == "bursts":
        data["arrivals"]["burst_size"] = 3
    arrivals = workload(data)
    assert len(arrivals) == tasks
    times = [a.at_ms for a in arrivals]
    assert times == sorted(times)
    assert times[0] >= 0
    assert [a.job.task_id for a in arrivals] == [f"t{i}" for i in range(tasks)]
    assert all(a.work > 0 for a in arrivals)
