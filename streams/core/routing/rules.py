"""Routing rules: map a task's type, tenant or a header to a pool of agents and a strategy.

Rules are tried in order and the first that matches wins; a job no rule matches uses the
configured default strategy on every agent. A rule's ``fallback`` chain says what to do when its
candidate set holds no healthy capable agent at all (it is not consulted when capable agents
exist but are merely busy: then the job waits for them):

- ``WIDEN``: drop the pool and try every agent (skills, target and zone still apply);
- ``WAIT``: answer BUSY, so the job stays queued until a capable agent comes back;
- ``DEAD_LETTER``: answer NO_CAPABLE_AGENT.

The chain is walked in order; ``WAIT`` and ``DEAD_LETTER`` end it, so they may only come last.
A chain that runs out answers NO_CAPABLE_AGENT.

Pools are sets of selectors. A selector is an agent id, ``skill=NAME`` (every agent with that
skill), ``zone=NAME`` (every agent in that zone), or ``name=value``, which selects every agent
whose ``labels[name] == value``; an agent is in the pool if any selector selects it. So a rule
can send a type to the agents of a skill or a zone even when its tasks ask for neither.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from streams.core.model import AgentInfo, Job
from streams.core.routing.names import check_strategy_name
from streams.errors import ConfigError


class Fallback(enum.Enum):
    """One step of a rule's fallback chain (see the module docstring)."""

    WIDEN = "WIDEN"
    WAIT = "WAIT"
    DEAD_LETTER = "DEAD_LETTER"


TERMINAL_FALLBACKS: frozenset[Fallback] = frozenset({Fallback.WAIT, Fallback.DEAD_LETTER})
SKILL_SELECTOR = "skill="
"""``skill=gpu`` in a pool selects every agent with the skill ``gpu``."""
ZONE_SELECTOR = "zone="
"""``zone=eu`` in a pool selects every agent in the zone ``eu``."""


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Jobs that match every given criterion (``None``: any) go to ``pool`` with ``strategy``.

    ``pool`` ``None`` means every agent; ``strategy`` ``None`` means the configured default.
    Pools and fallback chains may be given as any iterable (fallbacks also by name, such as
    ``"WIDEN"``), as a settings file would; they are stored as a frozenset and a tuple.
    """

    match_type: str | None = None
    match_tenant: str | None = None
    match_header: tuple[str, str] | None = None
    pool: frozenset[str] | None = None
    strategy: str | None = None
    fallback: tuple[Fallback, ...] = ()

    def __post_init__(self) -> None:
        if self.strategy is not None:
            check_strategy_name(self.strategy, field="routing rule strategy")
        if self.pool is not None:
            object.__setattr__(self, "pool", _checked_pool(self.pool))
        if self.match_header is not None:
            object.__setattr__(self, "match_header", _checked_header(self.match_header))
        object.__setattr__(self, "fallback", _checked_fallback(self.fallback))

    def matches(self, job: Job) -> bool:
        """True when the job meets every criterion the rule sets."""
        if self.match_type is not None and job.task_type != self.match_type:
            return False
        if self.match_tenant is not None and job.tenant != self.match_tenant:
            return False
        if self.match_header is None:
            return True
        name, value = self.match_header
        return job.header(name) == value


def first_match(rules: tuple[RoutingRule, ...], job: Job) -> RoutingRule | None:
    """The first rule that matches ``job``, or ``None``."""
    for rule in rules:
        if rule.matches(job):
            return rule
    return None


def in_pool(agent: AgentInfo, pool: frozenset[str]) -> bool:
    """True when a selector of ``pool`` names the agent's id, one of its skills
    (``skill=NAME``), its zone (``zone=NAME``) or one of its ``name=value`` labels."""
    if agent.agent_id in pool:
        return True
    if any(f"{SKILL_SELECTOR}{skill}" in pool for skill in agent.skills):
        return True
    if agent.zone is not None and f"{ZONE_SELECTOR}{agent.zone}" in pool:
        return True
    return any(f"{name}={value}" in pool for name, value in agent.labels.items())


def _checked_pool(pool: Iterable[str]) -> frozenset[str]:
    if isinstance(pool, str):
        raise ConfigError(
            f"routing rule pool: expected a set of selectors, got the string {pool!r}"
        )
    selectors = frozenset(pool)
    if not selectors:
        raise ConfigError("routing rule pool: empty; use None for 'every agent'")
    return selectors


def _checked_header(header: Iterable[str]) -> tuple[str, str]:
    pair = tuple(header)
    if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
        raise ConfigError(f"routing rule match_header: expected (name, value), got {header!r}")
    return pair[0], pair[1]


def _checked_fallback(chain: Iterable[Fallback | str]) -> tuple[Fallback, ...]:
    steps = tuple(_as_fallback(step) for step in chain)
    for step in steps[:-1]:
        if step in TERMINAL_FALLBACKS:
            raise ConfigError(
                f"routing rule fallback: {step.value} ends the chain, so it must come last: "
                f"{[s.value for s in steps]}"
            )
    return steps


def _as_fallback(step: Fallback | str) -> Fallback:
    if isinstance(step, Fallback):
        return step
    try:
        return Fallback(step)
    except ValueError:
        valid = ", ".join(f.value for f in Fallback)
        raise ConfigError(
            f"routing rule fallback: unknown step {step!r}; valid steps: {valid}"
        ) from None
