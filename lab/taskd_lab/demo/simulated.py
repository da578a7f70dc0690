"""The demo's own plan through the simulator (``streams.core.sim``): the same fleet, workload,
strategy and dispatcher settings, on the demo's clock, so that its figures and the live run's
compare directly (``taskd_lab.demo.gap``).

How the live run maps onto the simulator:

- agents: one group of one per ``AgentSpec``: the live agent's id (routing hashes keys onto
  ids), slots, speed, skills, zone, failure rate, and the routing weight ``Fleet`` gives it;
  with the live dispatcher's prefetch: it counts ``capacity + int(capacity * prefetch_share)``
  slots for an agent, and the simulated agent takes as many, runs ``capacity`` at once and
  starts the others most urgent first, as a live agent does (``AgentGroup.prefetch``);
- the killed agent crashes, for good, when the live run kills it: half way through the arrivals;
- tasks: the very ``Task`` the submitter sends (``Workload.task``), submitted at its arrival
  time on the demo's clock, as the dispatcher reads it (``task_to_job``); its work and whether
  it is poison from its payload, as the agent reads it (``parse_payload``);
- the distributor: the configuration the demo's ``taskd dispatcher`` builds from what ``Fleet``
  passes it (strategy, heartbeat, suspect and down timings, lease) and the settings (priority
  levels, retry tiers); aging, back-pressure and the no-capable-agent wait at their defaults;
- the end: the simulation stops where the live run stops waiting, ``drain_limit_s`` after the
  last arrival; both runs are measured by ``figures.compute`` (``taskd_lab.demo.sim_records``).

What it cannot model: the pipeline's hops. Simulated, an assignment reaches its agent and a
result the distributor in no time; live, each goes through Kafka (a producer's linger, a fetch,
the dispatcher's loop and commit interval), so a freed slot idles for that round trip unless a
prefetched task waits at the agent. The kill is a crash at an exact time (live: within a tick
of the watch loop), and the flaky agents' failures are drawn from the seed, not at random:
the same share, not the same attempts.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from streams.core.sim import (
    AgentGroup,
    Arrival,
    Arrivals,
    Scenario,
    TaskClass,
    Trace,
    WorkSpec,
    simulate,
)
from streams.dispatcher_config import DispatcherConfig
from streams.examples import parse_payload
from streams.settings import Settings
from streams.wire import Task, task_to_job
from streams.worker import FatalError
from taskd_lab.demo.figures import compute
from taskd_lab.demo.fleet import AgentSpec, Timings
from taskd_lab.demo.run import Plan
from taskd_lab.demo.sim_records import trace_records
from taskd_lab.demo.workload import Workload, agent_group

HOPS = "not modelled: the hops through Kafka, which take no time in the simulation"


@dataclass(frozen=True, slots=True)
class SimulatedPlan:
    """A live plan as a simulator run: its scenario, its arrivals, and the tasks they are."""

    strategy: str
    scenario: Scenario
    arrivals: tuple[Arrival, ...]
    tasks: dict[str, Task]
    """Task id -> the task as the submitter would send it (submitted at its arrival time)."""
    prefetch_share: float

    def model(self) -> dict[str, Any]:
        """How the live run was modelled, JSON-ready (for ``demo.json``)."""
        groups = self.scenario.agents
        return {
            "strategy": self.strategy,
            "tasks": len(self.arrivals),
            "clock": "the demo's (ms since the first submission)",
            "prefetch_share": self.prefetch_share,
            "prefetch": {group.name: group.prefetch for group in groups},
            "crash_at_ms": {g.name: g.crash_at_ms for g in groups if g.crash_at_ms is not None},
            "time_limit_ms": self.scenario.time_limit_ms,
            "hops": HOPS,
        }


def dispatcher_config(strategy: str, timings: Timings) -> DispatcherConfig:
    """What ``taskd dispatcher`` builds from the arguments ``Fleet`` gives it: the strategy and
    the timings; every other knob at its default (the command's defaults are these)."""
    return DispatcherConfig(
        strategy=strategy,
        heartbeat_interval_ms=timings.heartbeat_ms,
        suspect_after_ms=timings.suspect_after_ms,
        down_after_ms=timings.down_after_ms,
        lease_ms=timings.lease_ms,
    )


def simulated_plan(plan: Plan, settings: Settings, timings: Timings | None = None) -> SimulatedPlan:
    """``plan`` (what ``run_plan`` runs through Kafka) as a simulator run."""
    config = dispatcher_config(plan.strategy, timings or Timings())
    core = config.distributor(settings)
    workload = plan.workload
    tasks = [workload.task(index, workload.at_ms(index)) for index in range(len(workload.arrivals))]
    arrivals = tuple(_arrival(task) for task in tasks)
    scenario = Scenario(
        name="demo",
        seed=workload.seed,
        strategies=(plan.strategy,),
        arrivals=_arrival_process(workload),
        agents=tuple(_group(spec, plan, config) for spec in plan.fleet),
        tasks=tuple(_on_demo_clock(task, workload.speedup) for task in workload.scenario.tasks),
        scheduler=core.scheduler,
        routing=core.routing,
        health=core.health,
        lease_ms=core.lease_ms,
        retry_backoffs_ms=core.retry_backoffs_ms,
        time_limit_ms=workload.span_ms + round(plan.drain_limit_s * 1000),
    )
    return SimulatedPlan(
        plan.strategy, scenario, arrivals, {t.task_id: t for t in tasks}, config.prefetch_share
    )


def simulate_plan(plan: Plan, settings: Settings) -> dict[str, Any]:
    """Run ``plan`` through the simulator: ``{"model", "figures", "all_ended", "seconds"}``,
    the figures as ``run_plan`` gives the live run's (``figures.compute`` of its records)."""
    began = time.monotonic()
    simulated = simulated_plan(plan, settings)
    trace = Trace()
    result = simulate(simulated.scenario, simulated.strategy, simulated.arrivals, trace)
    records = trace_records(
        trace,
        simulated.tasks,
        capacities={spec.agent_id: spec.capacity for spec in plan.fleet},
        end_ms=result.end_ms,
        lease_ms=simulated.scenario.lease_ms,
    )
    return {
        "model": simulated.model(),
        "figures": compute(records, levels=settings.priority_levels),
        "all_ended": result.finished,
        "seconds": round(time.monotonic() - began, 2),
    }


def _arrival(task: Task) -> Arrival:
    """The task as the dispatcher reads it, its work as the agent reads it (work units run
    ``1000 * work / speed`` ms in the simulator; ``work_ms / speed`` ms at a live agent)."""
    work_ms, failure = parse_payload(task.payload)
    job = task_to_job(task)
    return Arrival(task.submitted_at, job, work_ms / 1000, fatal=failure is FatalError)


def _group(spec: AgentSpec, plan: Plan, config: DispatcherConfig) -> AgentGroup:
    """The agent's group, with the dispatcher's prefetch for it and, killed, its crash."""
    crash_at_ms = round(plan.workload.span_ms / 2) if spec.agent_id == plan.killed else None
    return dataclasses.replace(
        agent_group(spec),
        prefetch=config.slots(spec.capacity) - spec.capacity,
        crash_at_ms=crash_at_ms,
    )


def _arrival_process(workload: Workload) -> Arrivals:
    """The reference's arrival process at the demo's rate (for the record: the arrivals are
    given, not drawn again)."""
    process = workload.scenario.arrivals
    rate_per_s = process.rate_per_s * workload.speedup
    return dataclasses.replace(process, rate_per_s=rate_per_s, tasks=len(workload.arrivals))


def _on_demo_clock(task: TaskClass, speedup: float) -> TaskClass:
    """A class of the reference's mix with its work, deadline and TTL on the demo's clock."""
    work = WorkSpec(task.work.distribution, task.work.mean / speedup, task.work.sigma)

    def faster(ms: int | None) -> int | None:
        return None if ms is None else max(1, round(ms / speedup))

    return dataclasses.replace(
        task, work=work, deadline_ms=faster(task.deadline_ms), ttl_ms=faster(task.ttl_ms)
    )
