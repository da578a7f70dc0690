"""Capacity planning: how many agents of each group meet an SLO, and at what cost.

``plan(scenario, slo)`` runs the simulator on fleets of the scenario's agent groups with
other counts, and returns every fleet it tried and the answer. The workload is generated once
from the seed and every fleet replays it (as ``taskd simulate``'s strategies do), so fleets
are compared on the same tasks and the same scenario and seed give the same plan. The arrival
rate is the scenario's: a ``load`` in the file was turned into a rate against the fleet as
written, and stays that rate whatever fleet serves it.

The search, in two steps, on the objectives more agents help to meet (``Slo.helped_met``):

1. *Scale* every group by one factor: the fleet of size ``m`` has ``ceil(count * m / total)``
   agents per group (the file's fleet at ``m = total``, one of each at ``m = 1``). From the
   file's fleet, double ``m`` until the SLO is met, then bisect between the last fleet that
   missed it and the first that met it.
2. *Trim* group by group, those whose capacity costs most first (cost per hour over slots
   times speed): for each, the fewest agents that still meet the SLO with the other groups as
   they are (bisection), in passes until a pass removes nothing.

The promise, for the answer of a complete search: it met the SLO when simulated, and so did
no fleet with one agent fewer in any one group (each of those was simulated and missed),
except where a group is down to one agent, the least a group keeps. That is a local minimum:
cheaper fleets of another shape may exist (the trim does not move agents between groups).
Simulations are deterministic, so the same fleet is never simulated twice; at most
``max_runs`` are, and when they run out the answer is the cheapest fleet that met the SLO so
far (``complete`` is false). A lower bound on utilization is then checked on the answer.

``closed_form`` answers the same question with Erlang C when the scenario is an M/M/c queue
(``queueing.py``): the check of the planner on the closed-form scenarios.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from streams.core.routing.names import RANDOM_PUSH, is_late_binding
from streams.core.sim.engine import simulate
from streams.core.sim.queueing import erlang_c, erlang_c_wait_ms, erlang_c_wait_over
from streams.core.sim.scenario import Scenario
from streams.core.sim.slo import Figures, Slo
from streams.core.sim.spec import EXPONENTIAL, POISSON, AgentGroup
from streams.core.sim.workload import Arrival, generate
from streams.errors import ConfigError, CoreError

SCALE = "scale"
TRIM = "trim"

MAX_RUNS = 40
"""Simulations a plan runs at most by default."""
MAX_SCALE = 64
"""The scale step stops at this many times the file's fleet: an SLO that so many agents
cannot meet is one no count meets (a deadline shorter than the work, say)."""


@dataclass(frozen=True, slots=True)
class Trial:
    """One fleet simulated: its counts per group (in the scenario's order) and what it met."""

    step: str
    """``scale`` or ``trim GROUP``: which step of the search tried it."""
    counts: tuple[int, ...]
    cost_per_hour: float
    figures: Figures
    met: bool
    """Every objective of the SLO met."""
    helped_met: bool
    """The objectives more agents help to meet, met (what the search goes by)."""

    @property
    def agents(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``plan`` found: every fleet tried, in order, and the answer."""

    scenario: Scenario
    slo: Slo
    strategy: str
    tasks: int
    trials: tuple[Trial, ...]
    answer: Trial | None
    """The cheapest fleet found that meets the SLO; ``None``: none did."""
    complete: bool
    """The search ran to its end within ``max_runs`` (the answer is then a local minimum)."""
    verdict: str
    """One sentence: the answer, or why there is none."""

    @property
    def groups(self) -> tuple[AgentGroup, ...]:
        return self.scenario.agents


def fleet_cost(groups: Sequence[AgentGroup], counts: Sequence[int]) -> float:
    """Cost per hour of ``counts`` agents of each group."""
    return sum(group.cost_per_hour * count for group, count in zip(groups, counts, strict=True))


def with_counts(scenario: Scenario, counts: Sequence[int]) -> Scenario:
    """The scenario with ``counts`` agents per group (ids derived again from the names)."""
    groups = tuple(
        replace(group, count=count, ids=())
        for group, count in zip(scenario.agents, counts, strict=True)
    )
    return replace(scenario, agents=groups)


def scaled(counts: Sequence[int], size: int) -> tuple[int, ...]:
    """The fleet of ``size`` in the scale step: each group ``ceil(count * size / total)``."""
    total = sum(counts)
    return tuple(max(1, -(-count * size // total)) for count in counts)


def check_slo(scenario: Scenario, slo: Slo) -> None:
    """Raise ConfigError if the scenario cannot measure a metric the SLO bounds."""
    if "deadline" in slo.metrics and not any(t.deadline_ms for t in scenario.tasks):
        raise ConfigError("--slo bounds deadline, but no task of the scenario has a deadline_ms")


def plan(
    scenario: Scenario,
    slo: Slo,
    *,
    strategy: str | None = None,
    max_runs: int = MAX_RUNS,
    on_trial: Callable[[Trial, int], None] | None = None,
) -> Plan:
    """Search the cheapest fleet meeting ``slo`` (see the module docstring). ``strategy``:
    the routing strategy every run uses (default: the scenario's first); ``on_trial``: called
    with each fleet simulated and its number, as it is (progress)."""
    check_slo(scenario, slo)
    if max_runs < 1:
        raise ConfigError(f"max_runs must be >= 1, got {max_runs}")
    search = _Search(scenario, slo, strategy or scenario.strategies[0], max_runs, on_trial)
    complete = search.run()
    trials = tuple(search.trials.values())
    met = [trial for trial in trials if trial.met]
    answer = None
    if complete and search.best is not None and search.best.met:
        answer = search.best
    elif not complete and met:
        answer = min(met, key=lambda trial: (trial.cost_per_hour, trial.agents))
    return Plan(
        scenario=scenario,
        slo=slo,
        strategy=search.strategy,
        tasks=len(search.arrivals),
        trials=trials,
        answer=answer,
        complete=complete,
        verdict=_verdict(scenario, slo, search, answer, complete),
    )


class _Search:
    """The state of one search: the fleets simulated so far, by counts."""

    def __init__(
        self,
        scenario: Scenario,
        slo: Slo,
        strategy: str,
        max_runs: int,
        on_trial: Callable[[Trial, int], None] | None,
    ) -> None:
        self.scenario = scenario
        self.slo = slo
        self.strategy = strategy
        self.max_runs = max_runs
        self.on_trial = on_trial
        self.arrivals: tuple[Arrival, ...] = generate(scenario)
        self.trials: dict[tuple[int, ...], Trial] = {}
        self.best: Trial | None = None
        """The fleet the search stands on: the last that met the helped objectives."""
        self.out_of_runs = False
        self.too_big = False

    def run(self) -> bool:
        """Search; True if it ran to its end (not out of runs)."""
        try:
            size = self._scale()
            if size is None:
                return True
            self._trim()
        except _OutOfRunsError:
            return False
        return True

    def _try(self, counts: tuple[int, ...], step: str) -> bool:
        """Whether ``counts`` meets the helped objectives, simulating it unless done before."""
        known = self.trials.get(counts)
        if known is None:
            if len(self.trials) >= self.max_runs:
                raise _OutOfRunsError
            fleet = with_counts(self.scenario, counts)
            figures = Figures.of(simulate(fleet, self.strategy, self.arrivals))
            known = Trial(
                step=step,
                counts=counts,
                cost_per_hour=fleet_cost(self.scenario.agents, counts),
                figures=figures,
                met=self.slo.met(figures),
                helped_met=self.slo.helped_met(figures),
            )
            self.trials[counts] = known
            if self.on_trial is not None:
                self.on_trial(known, len(self.trials))
        if known.helped_met:
            self.best = known
        return known.helped_met

    def _scale(self) -> int | None:
        """The smallest size whose scaled fleet meets the SLO; ``None`` if none up to
        ``MAX_SCALE`` times the file's fleet does."""
        base = tuple(group.count for group in self.scenario.agents)
        total = sum(base)
        low, high = 0, total  # low: a size known to miss (0: no fleet, which misses everything)
        while not self._try(scaled(base, high), SCALE):
            low, high = high, 2 * high
            if high > MAX_SCALE * total:
                self.too_big = True
                return None
        while high - low > 1:
            middle = (low + high) // 2
            counts = scaled(base, middle)
            if counts == scaled(base, high):
                high = middle  # the same fleet as one known to meet it
            elif low > 0 and counts == scaled(base, low):
                low = middle
            elif self._try(counts, SCALE):
                high = middle
            else:
                low = middle
        # Re-simulating nothing: the fleet at ``high`` is in the table and met the SLO.
        self._try(scaled(base, high), SCALE)
        return high

    def _trim(self) -> None:
        assert self.best is not None
        groups = self.scenario.agents
        # Capacity that costs most goes first: an agent of a dear, slow group saves more per
        # slot-second of work removed than one of a cheap, fast group.
        order = sorted(
            range(len(groups)),
            key=lambda i: (-groups[i].cost_per_hour / (groups[i].capacity * groups[i].speed), i),
        )
        changed = True
        while changed:
            changed = False
            for index in order:
                changed |= self._trim_group(index)

    def _trim_group(self, index: int) -> bool:
        """Fewest agents of group ``index`` meeting the SLO, the others held; True if fewer."""
        assert self.best is not None
        counts = self.best.counts
        step = f"{TRIM} {self.scenario.agents[index].name}"

        def fleet(count: int) -> tuple[int, ...]:
            return (*counts[:index], count, *counts[index + 1 :])

        current = counts[index]
        if current == 1 or not self._try(fleet(current - 1), step):
            self.best = self.trials[counts]
            return False
        low, high = 0, current - 1  # 0 agents of a group: not a fleet the search offers
        while high - low > 1:
            middle = (low + high) // 2
            if self._try(fleet(middle), step):
                high = middle
            else:
                low = middle
        self.best = self.trials[fleet(high)]
        return True


class _OutOfRunsError(CoreError):
    """``max_runs`` fleets simulated: the search stops where it is (never leaves ``plan``)."""


def _verdict(
    scenario: Scenario, slo: Slo, search: _Search, answer: Trial | None, complete: bool
) -> str:
    runs = len(search.trials)
    names = [group.name for group in scenario.agents]
    if answer is not None:
        fleet = " ".join(f"{name}={n}" for name, n in zip(names, answer.counts, strict=True))
        head = f"{fleet} ({answer.agents} agents, {answer.cost_per_hour:g} per hour)"
        if complete:
            return f"{head}: meets {slo.text}; one agent fewer in any group misses it ({runs} runs)"
        return (
            f"{head}: the cheapest that met {slo.text} in {runs} runs "
            "(out of runs: a cheaper one may meet it)"
        )
    if search.too_big:
        return (
            f"no fleet up to {MAX_SCALE} times the scenario's meets "
            f"{', '.join(o.text for o in slo.objectives if o.helped)} ({runs} runs)"
        )
    if not complete:
        return f"no fleet met {slo.text} in {runs} runs (raise --max-runs)"
    best = search.best
    assert best is not None
    missed = ", ".join(o.text for o in slo.missed(best.figures))
    return (
        f"no fleet meets {slo.text}: the smallest meeting the rest "
        f"({best.agents} agents) misses {missed}, and more agents only lower utilization"
    )


@dataclass(frozen=True, slots=True)
class ClosedForm:
    """The answer queueing theory gives for an M/M/c scenario."""

    model: str
    """``M/M/c`` (late binding: one queue for every slot) or ``M/M/1 per agent`` (random
    push: each agent an M/M/1 queue of its share of the arrivals)."""
    arrival_per_s: float
    service_per_s: float
    """Per slot: speed over mean work."""
    agents: int
    """The fewest agents of the one group meeting the SLO."""
    figures: Figures
    """The closed-form figures at ``agents`` (the theory's, not a run's)."""


def closed_form(scenario: Scenario, slo: Slo, strategy: str | None = None) -> ClosedForm | None:
    """Erlang C's answer to the plan's question, when the scenario is an M/M/c queue for it:
    Poisson arrivals, one task class of exponential work without TTL, skills or zone, one
    tenant, one agent group that never fails, no prefetch, one dispatcher, and a late-binding
    strategy (or random push on one-slot agents: M/M/1 per agent). ``None`` otherwise."""
    name = strategy or scenario.strategies[0]
    if not _is_mmc(scenario, name):
        return None
    (group,) = scenario.agents
    (task,) = scenario.tasks
    arrival = scenario.arrivals.rate_per_s
    service = group.speed / task.work.mean
    per_agent = name == RANDOM_PUSH
    model = "M/M/1 per agent" if per_agent else "M/M/c"
    slots = group.capacity
    # The fewest agents that are stable, then upwards: every helped figure improves with c.
    agents = max(1, math.floor(arrival / (service * slots)) + 1)
    while True:
        figures = _theory(agents, slots, arrival, service, task.deadline_ms, per_agent)
        if slo.helped_met(figures):
            break
        agents += 1
    return ClosedForm(model, arrival, service, agents, figures)


def _is_mmc(scenario: Scenario, strategy: str) -> bool:
    if len(scenario.agents) != 1 or len(scenario.tasks) != 1:
        return False
    (group,) = scenario.agents
    (task,) = scenario.tasks
    arrivals = scenario.arrivals
    push_ok = strategy == RANDOM_PUSH and group.capacity == 1
    return (
        arrivals.process == POISSON
        and task.work.distribution == EXPONENTIAL
        and task.ttl_ms is None
        and not task.required_skills
        and task.zone is None
        and len(task.tenants) == 1
        and task.affinity_keys == 0
        and task.ordering_keys == 0  # keyed tasks wait for each other: no longer M/M/c
        and group.failure_probability == 0
        and group.crash_at_ms is None
        and group.prefetch == 0
        and scenario.dispatcher_shards == 1
        and (is_late_binding(strategy) or push_ok)
    )


def _theory(
    agents: int,
    slots: int,
    arrival: float,
    service: float,
    deadline_ms: int | None,
    per_agent: bool,
) -> Figures:
    """M/M/c figures of ``agents`` agents of ``slots`` slots (per agent: M/M/1 each)."""
    servers, rate = (1, arrival / agents) if per_agent else (agents * slots, arrival)
    if not rate < servers * service:
        missed = None if deadline_ms is None else 0.0
        return Figures(math.inf, math.inf, math.inf, missed, 1.0, 1.0)
    waiting = erlang_c(servers, rate / service)
    drain = servers * service - rate

    def quantile_ms(share: float) -> int:
        # P(wait > t) = C * exp(-drain * t): the smallest t with at most 1 - share above.
        above = 1 - share
        return 0 if waiting <= above else math.ceil(1000 * math.log(waiting / above) / drain)

    return Figures(
        mean_queue_ms=erlang_c_wait_ms(servers, rate, service),
        p50_queue_ms=quantile_ms(0.5),
        p99_queue_ms=quantile_ms(0.99),
        deadline=None
        if deadline_ms is None
        else 1 - erlang_c_wait_over(servers, rate, service, deadline_ms),
        completion=1.0,
        utilization=rate / (servers * service),
    )
