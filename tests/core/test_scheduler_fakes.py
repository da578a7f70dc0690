"""Fakes shared by the scheduler tests (this module holds no tests of its own).

:class:`Fleet` is a truthful placer over real ``AgentInfo`` agents: it answers NEVER only when no
agent can run the job, None only when every capable agent is full, and logs every answer with
the slots free before it, so tests can check the scheduler against what the agents really were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.core.model import AgentInfo, Job
from streams.core.scheduling import NEVER, NeverPlaceable

ClassKey = tuple[frozenset[str], str | None]


def class_of(job: Job) -> ClassKey:
    return (job.required_skills, job.target_agent)


def order_key(job: Job, seq: int) -> tuple[float, int, int]:
    """The documented order within a queue: last start (none last), submitted, offer order."""
    last_start_ms = job.last_start_ms()
    return (float("inf") if last_start_ms is None else last_start_ms, job.submitted_ms, seq)


@dataclass(frozen=True)
class Answer:
    """One ``place`` call as the fleet saw it."""

    now_ms: int
    job: Job
    answer: str | NeverPlaceable | None
    free_before: int
    total_before: int


class Fleet:
    """Agents with skills and slots; places a job on the least-loaded free capable agent."""

    def __init__(self, agents: Iterable[AgentInfo] = ()) -> None:
        self.agents: dict[str, AgentInfo] = {agent.agent_id: agent for agent in agents}
        self.now_ms = 0
        self.log: list[Answer] = []

    @property
    def total_slots(self) -> int:
        return sum(agent.capacity for agent in self.agents.values())

    @property
    def free_slots(self) -> int:
        return sum(agent.free_slots for agent in self.agents.values())

    def place(self, job: Job) -> str | NeverPlaceable | None:
        free_before, total_before = self.free_slots, self.total_slots
        answer = self._choose(job)
        self.log.append(Answer(self.now_ms, job, answer, free_before, total_before))
        return answer

    def _choose(self, job: Job) -> str | NeverPlaceable | None:
        capable = [agent for agent in self.agents.values() if agent.can_run(job)]
        if not capable:
            return NEVER
        free = [agent for agent in capable if agent.free_slots > 0]
        if not free:
            return None
        agent = min(free, key=lambda agent: (agent.load, agent.agent_id))
        agent.in_flight += 1
        return agent.agent_id

    def finish(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.in_flight -= 1


def agent(agent_id: str, capacity: int = 1, skills: Iterable[str] = ()) -> AgentInfo:
    return AgentInfo(agent_id=agent_id, capacity=capacity, skills=frozenset(skills))


def job(
    task_id: str,
    priority: int = 0,
    *,
    submitted_ms: int = 0,
    tenant: str = "default",
    skills: Iterable[str] = (),
    target: str | None = None,
    deadline_ms: int | None = None,
    expires_ms: int | None = None,
) -> Job:
    return Job(
        task_id=task_id,
        priority=priority,
        submitted_ms=submitted_ms,
        tenant=tenant,
        required_skills=frozenset(skills),
        target_agent=target,
        deadline_ms=deadline_ms,
        expires_ms=expires_ms,
    )
