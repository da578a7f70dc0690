"""The closed forms: known values, identities between them, and their domains."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.sim import erlang_b, erlang_c, erlang_c_wait_ms, mm1_wait_ms
from streams.errors import CoreError


def erlang_c_by_the_textbook(servers: int, offered: float) -> float:
    """C(n, a) = (a^n/n! * n/(n-a)) / (sum_{k<n} a^k/k! + a^n/n! * n/(n-a))."""
    top = offered**servers / math.factorial(servers) * servers / (servers - offered)
    bottom = sum(offered**k / math.factorial(k) for k in range(servers)) + top
    return top / bottom


@pytest.mark.parametrize(
    ("servers", "offered", "blocking"),
    [(1, 1.0, 0.5), (2, 1.0, 0.2), (3, 2.0, 4 / 19), (10, 5.0, 0.018384)],
)
def test_erlang_b_known_values(servers: int, offered: float, blocking: float) -> None:
    assert erlang_b(servers, offered) == pytest.approx(blocking, rel=1e-4)


def test_erlang_c_for_four_servers_at_80_percent() -> None:
    # a = 3.2: a^4/4! = 4.369, times 1/(1 - 0.8) = 21.845; sum_{k<4} a^k/k! = 14.781.
    assert erlang_c(4, 3.2) == pytest.approx(21.845 / (14.781 + 21.845), rel=1e-3)
    assert erlang_c_wait_ms(4, 3.2, 1.0) == pytest.approx(1000 * 0.5964 / 0.8, rel=1e-3)


def test_mm1_wait() -> None:
    assert mm1_wait_ms(0.7, 1.0) == pytest.approx(1000 * 0.7 / 0.3)
    assert mm1_wait_ms(0.0, 2.0) == 0.0


@given(servers=st.integers(1, 60), utilization=st.floats(0.01, 0.99))
def test_erlang_c_matches_the_textbook_formula(servers: int, utilization: float) -> None:
    offered = servers * utilization
    assert erlang_c(servers, offered) == pytest.approx(
        erlang_c_by_the_textbook(servers, offered), rel=1e-9
    )
    assert erlang_b(servers, offered) <= erlang_c(servers, offered) <= 1.0


@given(arrival=st.floats(0.0, 0.99), service=st.floats(0.1, 100.0))
def test_one_server_erlang_c_is_mm1(arrival: float, service: float) -> None:
    rate = arrival * service
    assert erlang_c(1, rate / service) == pytest.approx(rate / service, abs=1e-12)
    assert erlang_c_wait_ms(1, rate, service) == pytest.approx(mm1_wait_ms(rate, service))


@given(servers=st.integers(2, 30), utilization=st.floats(0.05, 0.95))
def test_pooling_waits_less_than_separate_queues(servers: int, utilization: float) -> None:
    """n servers sharing one queue beat n M/M/1 queues at the same utilization."""
    pooled = erlang_c_wait_ms(servers, servers * utilization, 1.0)
    assert pooled < mm1_wait_ms(utilization, 1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: erlang_c(4, 4.0),
        lambda: erlang_c(0, 0.5),
        lambda: erlang_b(2, -1.0),
        lambda: mm1_wait_ms(1.0, 1.0),
        lambda: mm1_wait_ms(0.5, 0.0),
        lambda: erlang_c_wait_ms(2, -1.0, 1.0),
    ],
)
def test_unstable_or_meaningless_queues_are_refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(CoreError):
        call()
