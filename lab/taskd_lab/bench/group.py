"""Two dispatcher instances against one, side by side: the ``group`` section of ``taskd bench``.

The same pipeline (``plan.agents`` agents) is run with one dispatcher and with two instances of
one group sharing the shards, each for one throughput run of ``plan.tasks`` tasks
(:func:`taskd_lab.bench.pipeline.throughput_run`): the throughput, and the CPU per task of the
dispatchers together, of the broker and of the agents. On a machine of two cores the throughput
cannot double (every process shares them); what is asked of the second instance is that it
costs no more per task and takes nothing away.

A shared machine drifts by tens of percent within minutes, so one pair of runs says little:
the pair is run ``plan.group_rounds`` times, in the order one-two, two-one, one-two, ... (a
drift weighs on both sides alike), each round compared within itself, and the report gives
the median of the rounds' ratios with every round's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import Any

from taskd_lab.bench.ours import running_pipeline
from taskd_lab.bench.pipeline import throughput_run
from taskd_lab.bench.plan import BenchPlan, Progress

INSTANCES = (1, 2)

Run = dict[str, Any]
Figure = Callable[[Run], float | None]


def run_group(plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    """``{"rounds": [{"1": run, "2": run}, ...]}``: each round's run with each number of
    instances."""
    rounds: list[dict[str, Run]] = []
    for index in range(plan.group_rounds):
        order = INSTANCES if index % 2 == 0 else INSTANCES[::-1]
        runs: dict[str, Run] = {}
        for count in order:
            progress(f"group: round {index + 1}/{plan.group_rounds}, {count} instance(s)")
            with running_pipeline(plan, f"group{count}", dispatchers=count) as pipeline:
                runs[str(count)] = throughput_run(pipeline, plan, progress)
        rounds.append(runs)
    return {"rounds": rounds}


def rounds_of(group: Mapping[str, Any]) -> list[Mapping[str, Run]]:
    """The section's rounds (a section written before rounds is its own one round)."""
    rounds: list[Mapping[str, Run]] = group.get("rounds") or [group]
    return rounds


def median_run(group: Mapping[str, Any], count: str) -> Run:
    """The run with ``count`` instances whose dispatcher CPU per task is the median (the lower
    of the two middle ones for an even number of rounds)."""
    runs = sorted((runs[count] for runs in rounds_of(group)), key=dispatchers_cpu)
    return runs[(len(runs) - 1) // 2]


def round_ratios(group: Mapping[str, Any], figure: Figure) -> list[float]:
    """Each round's two instances over one on ``figure`` (rounds lacking it left out)."""
    ratios = []
    for runs in rounds_of(group):
        one, two = figure(runs["1"]), figure(runs["2"])
        if one and two:
            ratios.append(two / one)
    return ratios


def median_ratio(group: Mapping[str, Any], figure: Figure) -> float | None:
    """The median of the rounds' ratios on ``figure`` (None when no round has it)."""
    ratios = round_ratios(group, figure)
    return statistics.median(ratios) if ratios else None


def dispatchers_cpu(run: Run) -> float:
    """The dispatchers' CPU ms per task, summed over the instances of the run."""
    cpu = run["cpu_ms_per_task"]
    return float(cpu.get("dispatchers", cpu["dispatcher"]))
