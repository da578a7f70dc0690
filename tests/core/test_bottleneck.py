"""The bottleneck verdict, on a distributor driven into each bottleneck."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.actions import Dispatch, ResultStatus
from streams.core.agents import HealthConfig, Heartbeat
from streams.core.bottleneck import (
    AGENTS,
    DISPATCHER_CPU,
    INTAKE,
    KINDS,
    NONE,
    SLOW_AGENT,
    Load,
    verdict,
)
from streams.core.distributor import Distributor, DistributorConfig
from streams.core.events import HeartbeatReceived, ResultReported, TaskArrived, TaskStarted
from streams.core.model import AgentInfo, AgentState, Job
from streams.core.routing import RoutingConfig
from streams.core.scheduling import SchedulerConfig
from streams.core.stats import ANY_NEED, Demand


def distributor(max_held: int = 1_000) -> Distributor:
    return Distributor(
        DistributorConfig(
            scheduler=SchedulerConfig(aging_ms=None, escalation_ms=0, max_held=max_held),
            routing=RoutingConfig(strategy="least-connections"),
            health=HealthConfig(heartbeat_interval_ms=1_000),
        )
    )


def beat(agent_id: str, capacity: int, now_ms: int = 0, skills: frozenset[str] = frozenset()):
    heartbeat = Heartbeat(agent_id, capacity, skills, None, 1.0, 0.0, "READY", now_ms)
    return HeartbeatReceived(heartbeat)


def load_of(core: Distributor, loop_busy: float | None = None) -> Load:
    return Load(
        agents=core.agents(),
        demand=core.stats.demand(),
        held=core.held,
        max_held=core.config.scheduler.max_held,
        intake_paused=core.intake_paused,
        without_capable_agent=core.without_capable_agent(),
        loop_busy=loop_busy,
    )


def tasks(count: int, skills: frozenset[str] = frozenset(), start: int = 0) -> list[TaskArrived]:
    return [TaskArrived(Job(f"t{start + n}", 1, 0, required_skills=skills)) for n in range(count)]


def test_nothing_waits_on_idle_agents() -> None:
    core = distributor()
    core.handle([beat("a", 2), beat("b", 2)], 0)
    found = verdict(load_of(core))
    assert found.kind == NONE
    assert found.text == "none: agents have 4 free slots of 4 and nothing waits"


def test_tasks_for_a_skill_no_agent_has() -> None:
    core = distributor()
    core.handle([beat("a", 2), *tasks(3, frozenset({"gpu"}))], 0)
    found = verdict(load_of(core))
    assert found.kind == AGENTS
    assert found.text == "agents: 3 tasks wait for agents with skill gpu, and none is ready"
    assert found.figures["skills"] == ["gpu"]


def test_tasks_wait_for_full_agents_of_their_skill_while_others_idle() -> None:
    core = distributor()
    gpu = frozenset({"gpu"})
    core.handle([beat("cpu", 4), beat("g1", 2, skills=gpu), beat("g2", 2, skills=gpu)], 0)
    core.handle(tasks(10, gpu), 10)
    found = verdict(load_of(core))
    assert found.kind == AGENTS
    # Four run, six wait: the figure counts what has not started (dispatched ones too).
    assert found.text == "agents: 10 tasks wait for agents with skill gpu: 0 free slots of 4"
    assert found.figures == {
        "waiting": 10,
        "free_slots": 0,
        "slots": 4,
        "skills": ["gpu"],
        "zone": None,
    }


def test_the_intake_paused_while_agents_have_free_slots() -> None:
    core = distributor(max_held=5)
    core.handle([beat("a", 3), *tasks(5, frozenset({"gpu"}))], 0)
    assert core.intake_paused
    found = verdict(load_of(core))
    assert found.kind == INTAKE
    assert found.text == (
        "intake: the dispatcher paused reading (held 5, max_held 5) while agents have 3 free "
        "slots of 3"
    )


def test_a_slow_agent_among_its_peers() -> None:
    core = distributor()
    core.handle([beat(name, 1) for name in ("a1", "a2", "a3", "a4")], 0)
    now_ms = 0
    run_ms = {"a1": 1_000, "a2": 1_100, "a3": 4_000, "a4": 900}
    for round_ in range(6):
        actions = core.handle(tasks(4, start=4 * round_), now_ms)
        dispatched = [a for a in actions if isinstance(a, Dispatch)]
        assert len(dispatched) == 4
        core.handle([TaskStarted(d.job.task_id, d.agent_id, 0, now_ms) for d in dispatched], now_ms)
        for d in sorted(dispatched, key=lambda d: run_ms[d.agent_id]):
            at_ms = now_ms + run_ms[d.agent_id]
            done = ResultReported(d.job.task_id, d.agent_id, 0, ResultStatus.SUCCEEDED)
            core.handle([done, *(beat(n, 1, at_ms) for n in run_ms)], at_ms)
        now_ms += 4_000
    # One more round: a3 is busy again (only a busy agent can hold anything up).
    core.handle(tasks(4, start=100), now_ms)
    found = verdict(load_of(core))
    assert found.kind == SLOW_AGENT
    assert found.figures["agent"] == "a3"
    assert found.text == (
        "a slow agent: a3 runs 3.8x the median time of its pool default (4,000 ms against 1,050 ms)"
    )


def test_the_dispatcher_loop_busy_comes_first() -> None:
    core = distributor(max_held=5)
    core.handle([beat("a", 3), *tasks(5, frozenset({"gpu"}))], 0)
    found = verdict(load_of(core, loop_busy=0.96))
    assert found.kind == DISPATCHER_CPU
    assert found.text == "dispatcher CPU: loop busy 96% of the last 10 s"


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 6), st.sampled_from(list(AgentState))),
        max_size=6,
    ),
    st.integers(0, 50),
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 1)),
)
def test_every_load_has_one_verdict_with_its_figure(
    agents: list[tuple[int, int, AgentState]],
    waiting: int,
    paused: bool,
    busy: float | None,
) -> None:
    infos = [
        AgentInfo(f"a{n}", capacity, state=state, in_flight=in_flight)
        for n, (capacity, in_flight, state) in enumerate(agents)
    ]
    load = Load(
        agents=infos,
        demand={ANY_NEED: Demand(waiting, waiting)},
        held=waiting,
        max_held=max(waiting, 1),
        intake_paused=paused,
        loop_busy=busy,
    )
    found = verdict(load)
    assert found.kind in KINDS
    assert found.text.startswith(found.text.split(":")[0] + ":")
    free = sum(i.free_slots for i in infos if i.state is AgentState.READY)
    if found.kind == NONE:
        # "none" only when nothing waits for full agents.
        assert waiting == 0 or free > 0
    if found.kind == AGENTS:
        assert free == 0 and waiting > 0
    assert found.to_dict()["kind"] == found.kind
