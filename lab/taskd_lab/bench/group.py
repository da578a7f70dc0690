"""Two dispatcher instances against one, side by side: the ``group`` section of ``taskd bench``.

The same pipeline (``plan.agents`` agents) is run twice in a row, first with one dispatcher,
then with two instances of one group sharing the shards, each for one throughput run of
``plan.tasks`` tasks (:func:`taskd_lab.bench.pipeline.throughput_run`): the throughput, and the
CPU per task of the dispatchers together, of the broker and of the agents. On a machine of two
cores the throughput cannot double (every process shares them); what is asked of the second
instance is that it costs no more per task and takes nothing away.
"""

from __future__ import annotations

from typing import Any

from taskd_lab.bench.ours import running_pipeline
from taskd_lab.bench.pipeline import throughput_run
from taskd_lab.bench.plan import BenchPlan, Progress

INSTANCES = (1, 2)


def run_group(plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    """``{"1": run, "2": run}``: a throughput run with each number of instances."""
    runs: dict[str, Any] = {}
    for count in INSTANCES:
        progress(f"group: {count} dispatcher instance(s)")
        with running_pipeline(plan, f"group{count}", dispatchers=count) as pipeline:
            runs[str(count)] = throughput_run(pipeline, plan, progress)
    return runs


def dispatchers_cpu(run: dict[str, Any]) -> float:
    """The dispatchers' CPU ms per task, summed over the instances of the run."""
    cpu = run["cpu_ms_per_task"]
    return float(cpu.get("dispatchers", cpu["dispatcher"]))
