"""The discrete-event simulator: scenarios, workloads, simulated agents, and the loop that
drives a :class:`~streams.core.distributor.Distributor` with them, or K of them side by side
(dispatcher shards: ``sharding.py``, ``stealing.py``).

Pure like the rest of the core: standard library only, no clock, every random draw from a
``random.Random`` seeded by the scenario (or a hash of the seed), so a scenario and its seed
always give the same run, and every strategy sees the same workload. A ``Trace`` given to the
engine keeps every event of a run, for a driver that measures it like a live one.
"""

from streams.core.sim.agents_model import SimAgent, failure_draw
from streams.core.sim.engine import Engine, distributor_config, simulate
from streams.core.sim.queueing import erlang_b, erlang_c, erlang_c_wait_ms, mm1_wait_ms
from streams.core.sim.report import (
    COLUMNS,
    VARIANT_COLUMNS,
    Report,
    Run,
    against_first,
    compare,
    report_dict,
    report_json,
    run,
    runs,
    table,
    variant_table,
)
from streams.core.sim.result import AgentFigures, RunResult
from streams.core.sim.scenario import Scenario, parse_scenario, scenario_from_toml
from streams.core.sim.sharding import (
    OWN_AGENTS,
    SHARDINGS,
    SPLIT_SLOTS,
    SPLIT_SLOTS_EVEN,
    ShardPlan,
)
from streams.core.sim.spec import AgentGroup, Arrivals, TaskClass, Variant, WorkSpec
from streams.core.sim.stealing import Steal, plan_steals
from streams.core.sim.tally import Tally
from streams.core.sim.trace import Trace, TracedDeadLetter, TracedDispatch, TracedRun
from streams.core.sim.workload import Arrival, generate

__all__ = [
    "COLUMNS",
    "OWN_AGENTS",
    "SHARDINGS",
    "SPLIT_SLOTS",
    "SPLIT_SLOTS_EVEN",
    "VARIANT_COLUMNS",
    "AgentFigures",
    "AgentGroup",
    "Arrival",
    "Arrivals",
    "Engine",
    "Report",
    "Run",
    "RunResult",
    "Scenario",
    "ShardPlan",
    "SimAgent",
    "Steal",
    "Tally",
    "TaskClass",
    "Trace",
    "TracedDeadLetter",
    "TracedDispatch",
    "TracedRun",
    "Variant",
    "WorkSpec",
    "against_first",
    "compare",
    "distributor_config",
    "erlang_b",
    "erlang_c",
    "erlang_c_wait_ms",
    "failure_draw",
    "generate",
    "mm1_wait_ms",
    "parse_scenario",
    "plan_steals",
    "report_dict",
    "report_json",
    "run",
    "runs",
    "scenario_from_toml",
    "simulate",
    "table",
    "variant_table",
]
