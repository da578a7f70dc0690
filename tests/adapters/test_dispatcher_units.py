"""The dispatcher's pure pieces, without a broker: ordered acks, the registration view, the
ended window and duplicate rules, the configuration and the credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.adapters.dispatcher import DispatcherConfig
from streams.adapters.dispatcher.acks import OrderedAcks
from streams.adapters.dispatcher.app import build_app, credentials, state_dir
from streams.adapters.dispatcher.book import EndedWindow
from streams.adapters.dispatcher.registrations import Registrations
from streams.errors import ConfigError
from streams.settings import load_settings
from streams.wire import AgentRegistration, RegistrationStatus


def test_acks_go_out_in_offset_order_only() -> None:
    acked: list[int] = []
    acks = OrderedAcks()
    tokens = [acks.track("t", 0, offset, lambda o=offset: acked.append(o)) for offset in range(4)]
    other = acks.track("t", 1, 0, lambda: acked.append(100))
    acks.done(tokens[2])
    acks.done(tokens[1])
    assert acked == []  # offset 0 is not done: nothing may be acked
    acks.done(other)
    assert acked == [100]  # another partition is independent
    acks.done(tokens[0])
    assert acked == [100, 0, 1, 2]
    assert acks.pending() == 1
    acks.done(tokens[3])
    assert acked == [100, 0, 1, 2, 3] and acks.pending() == 0


def test_an_event_read_again_after_a_seek_keeps_the_order() -> None:
    acked: list[int] = []
    acks = OrderedAcks()
    late = acks.track("t", 0, 5, lambda: acked.append(5))
    early = acks.track("t", 0, 3, lambda: acked.append(3))
    acks.done(late)
    assert acked == []
    acks.done(early)
    assert acked == [3, 5]


def _claim(agent: str, partition: int, epoch: int, active: bool = True) -> AgentRegistration:
    status = RegistrationStatus.ACTIVE if active else RegistrationStatus.RELEASED
    return AgentRegistration(
        agent_id=agent,
        partition=partition,
        epoch=epoch,
        start_offset=0,
        status=status,
        registered_at=0,
        renewed_at=0,
        capacity=1,
    )


@pytest.mark.parametrize(
    ("records", "ended", "active"),
    [
        ([_claim("a", 0, 1), _claim("a", 0, 1)], [[], []], {"a": 1}),  # a renewal
        ([_claim("a", 0, 1), _claim("a", 0, 2)], [[], ["a"]], {"a": 2}),  # a restart
        ([_claim("a", 0, 1), _claim("a", 0, 1, False)], [[], ["a"]], {}),  # released
        ([_claim("a", 0, 1), _claim("b", 0, 2)], [[], ["a"]], {"b": 2}),  # taken over
        ([_claim("a", 0, 1), _claim("b", 1, 1)], [[], []], {"a": 1, "b": 1}),
    ],
)
def test_registrations_say_whose_claim_ends(
    records: list[AgentRegistration], ended: list[list[str]], active: dict[str, int]
) -> None:
    regs = Registrations()
    assert [regs.apply(record) for record in records] == ended
    found = {agent: regs.active(agent) for agent in ("a", "b")}
    assert {agent: reg.epoch for agent, reg in found.items() if reg is not None} == active


def test_the_ended_window_forgets_the_oldest_and_says_so() -> None:
    evicted: list[tuple[str, int]] = []
    window = EndedWindow(2, lambda task_id, shard: evicted.append((task_id, shard)))
    for index in range(3):
        window.add(f"t{index}", index)
    assert "t0" not in window and "t2" in window and len(window) == 2
    assert evicted == [("t0", 0)]


def test_timings_out_of_order_are_refused() -> None:
    with pytest.raises(ConfigError, match="down_after_ms"):
        DispatcherConfig(suspect_after_ms=5_000, down_after_ms=4_000)
    with pytest.raises(ConfigError, match="lease_ms"):
        DispatcherConfig(lease_ms=0)


def test_sasl_settings_become_faust_credentials() -> None:
    assert credentials(load_settings(bootstrap_servers="127.0.0.1:9092")) is None
    sasl = load_settings(
        bootstrap_servers="127.0.0.1:9092",
        security_protocol="SASL_SSL",
        sasl_username="taskd",
        sasl_password="secret",
    )
    found = credentials(sasl)
    assert found is not None
    assert (found.username, found.password) == ("taskd", "secret")
    assert found.ssl_context is not None and found.mechanism.value == "SCRAM-SHA-512"


def test_dispatcher_strategy_reaches_the_router_and_bad_names_are_refused() -> None:
    config = DispatcherConfig(strategy="round-robin-push")
    assert config.distributor(load_settings()).routing.strategy == "round-robin-push"
    with pytest.raises(ConfigError, match="strategy"):
        DispatcherConfig(strategy="fastest-please")


@given(
    capacity=st.integers(min_value=0, max_value=10_000),
    share=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)
def test_an_agent_counts_its_slots_plus_the_prefetch_rounded_down(
    capacity: int, share: float
) -> None:
    slots = DispatcherConfig(prefetch_share=share).slots(capacity)
    assert capacity <= slots <= capacity + capacity * share
    assert slots - capacity == int(capacity * share)
    assert DispatcherConfig(prefetch_share=0.0).slots(capacity) == capacity


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_a_prefetch_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ConfigError, match="prefetch_share"):
        DispatcherConfig(prefetch_share=share)


def test_each_prefix_keeps_its_own_state_under_a_shared_data_dir(tmp_path: Path) -> None:
    """Faust names its stores by table alone: two pipelines on one host must not share them."""
    first = load_settings(topic_prefix="a.", data_dir=tmp_path)
    second = load_settings(topic_prefix="b.", data_dir=tmp_path)
    assert state_dir(first) != state_dir(second)
    assert state_dir(first).parent == tmp_path == state_dir(second).parent
    app = build_app(first, DispatcherConfig())
    assert Path(app.conf.datadir) == state_dir(first)
