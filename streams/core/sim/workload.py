"""The workload of a scenario: arrival times and tasks, generated once from the seed.

Two independent streams, ``random.Random(f"{seed}:arrivals")`` for the times and
``random.Random(f"{seed}:tasks")`` for the mix, so that changing the task mix does not move
the arrivals. Every strategy of a run replays the same tuple of :class:`Arrival`.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from streams.core.model import ORDERING_KEY_HEADER, Job
from streams.core.sim.scenario import Scenario
from streams.core.sim.spec import BURSTS, CONSTANT, EXPONENTIAL, ZIPF, Arrivals, TaskClass


@dataclass(frozen=True, slots=True)
class Arrival:
    """One task as submitted at ``at_ms``, with the work it really takes (units)."""

    at_ms: int
    job: Job
    work: float
    fatal: bool = False
    """A poison task: every run of it ends FAILED (after its work), so it is dead-lettered.
    The generator makes none; a driver replaying its own workload may mark some."""


def generate(scenario: Scenario) -> tuple[Arrival, ...]:
    """Every arrival of the scenario, in time order (same scenario: same tuple)."""
    times = arrival_times(scenario.arrivals, random.Random(f"{scenario.seed}:arrivals"))
    mix = TaskMix(scenario.tasks, random.Random(f"{scenario.seed}:tasks"))
    return tuple(mix.arrival(index, at_ms) for index, at_ms in enumerate(times))


def arrival_times(arrivals: Arrivals, rng: random.Random) -> Iterator[int]:
    """Arrival times (ms, non-decreasing) of the process, cut at ``tasks`` or ``duration_ms``."""
    if arrivals.phases:
        return _phased(arrivals, rng)
    times = _unbounded(arrivals, rng)
    if arrivals.tasks is not None:
        return itertools.islice(times, arrivals.tasks)
    end_ms = arrivals.duration_ms
    return itertools.takewhile(lambda at_ms: end_ms is None or at_ms < end_ms, times)


def _phased(arrivals: Arrivals, rng: random.Random) -> Iterator[int]:
    """Each phase's process at its rate from its start to its end, one after the other
    (exact for Poisson arrivals: they have no memory, so a phase may start afresh)."""
    start_ms = 0
    for phase in arrivals.phases:
        end_ms = start_ms + phase.duration_ms
        process = replace(arrivals, rate_per_s=phase.rate_per_s, phases=())
        for at_ms in _unbounded(process, rng):
            if start_ms + at_ms >= end_ms:
                break
            yield start_ms + at_ms
        start_ms = end_ms


def _unbounded(arrivals: Arrivals, rng: random.Random) -> Iterator[int]:
    per_ms = arrivals.rate_per_s / 1000.0
    if arrivals.process == CONSTANT:
        return (round((index + 1) / per_ms) for index in itertools.count())
    size = arrivals.burst_size if arrivals.process == BURSTS else 1
    return _poisson(per_ms / size, size, rng)


def _poisson(bursts_per_ms: float, size: int, rng: random.Random) -> Iterator[int]:
    """Bursts of ``size`` simultaneous arrivals as a Poisson process (size 1: plain Poisson)."""
    clock_ms = 0.0
    while True:
        clock_ms += rng.expovariate(bursts_per_ms)
        at_ms = round(clock_ms)
        for _ in range(size):
            yield at_ms


class TaskMix:
    """Draws each task's class, work, tenant and affinity key from one seeded stream."""

    def __init__(self, classes: tuple[TaskClass, ...], rng: random.Random) -> None:
        self._classes = classes
        self._rng = rng
        self._cumulative = list(itertools.accumulate(task.share for task in classes))
        self._keys = [_key_names(task) for task in classes]
        self._key_weights = [_key_weights(task) for task in classes]

    def arrival(self, index: int, at_ms: int) -> Arrival:
        """The ``index``-th task (id ``t<index>``), submitted at ``at_ms``."""
        rng = self._rng
        which = min(
            bisect.bisect(self._cumulative, rng.random() * self._cumulative[-1]),
            len(self._classes) - 1,
        )
        task = self._classes[which]
        job = Job(
            task_id=f"t{index}",
            priority=task.priority,
            submitted_ms=at_ms,
            tenant=task.tenants[rng.randrange(len(task.tenants))],
            task_type=task.task_type,
            deadline_ms=None if task.deadline_ms is None else at_ms + task.deadline_ms,
            expires_ms=None if task.ttl_ms is None else at_ms + task.ttl_ms,
            required_skills=task.required_skills,
            zone=task.zone,
            affinity_key=self._key(which),
            cost=task.work.mean,
            max_attempts=task.max_attempts,
            headers=self._ordering(task),
        )
        return Arrival(at_ms, job, self._work(task))

    def _key(self, which: int) -> str | None:
        names = self._keys[which]
        if not names:
            return None
        weights = self._key_weights[which]
        if weights is None:
            return names[self._rng.randrange(len(names))]
        rank = bisect.bisect(weights, self._rng.random() * weights[-1])
        return names[min(rank, len(names) - 1)]

    def _ordering(self, task: TaskClass) -> tuple[tuple[str, str], ...]:
        """The ordering-key header (drawn only for a class that has keys: the draws of other
        scenarios stay as they were)."""
        if not task.ordering_keys:
            return ()
        key = f"{task.task_type}#{self._rng.randrange(task.ordering_keys)}"
        return ((ORDERING_KEY_HEADER, key),)

    def _work(self, task: TaskClass) -> float:
        work = task.work
        if work.distribution == CONSTANT:
            return work.mean
        if work.distribution == EXPONENTIAL:
            return self._rng.expovariate(1.0 / work.mean)
        return self._rng.lognormvariate(work.mu, work.sigma)


def _key_names(task: TaskClass) -> list[str]:
    return [f"{task.task_type}/{rank}" for rank in range(1, task.affinity_keys + 1)]


def _key_weights(task: TaskClass) -> list[float] | None:
    """Cumulative zipf weights ``1 / rank**s`` of the keys; ``None`` for uniform keys."""
    if task.affinity != ZIPF or task.affinity_keys == 0:
        return None
    ranks = range(1, task.affinity_keys + 1)
    return list(itertools.accumulate(rank**-task.zipf_exponent for rank in ranks))
