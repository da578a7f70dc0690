"""Closed forms of queueing theory the simulator is checked against.

Rates are per second, waits in milliseconds. ``erlang_c_wait_ms`` is the mean wait of an
M/M/n queue (Poisson arrivals, exponential service, n servers, one FIFO queue: late binding);
``mm1_wait_ms`` that of an M/M/1 queue (what each agent becomes when tasks are pushed to
agents at random on arrival). ``erlang_c_wait_over`` is the tail: the share of tasks that
wait longer than a time, which is what a percentile or a deadline asks.
"""

from __future__ import annotations

import math

from streams.errors import CoreError


def erlang_b(servers: int, offered: float) -> float:
    """Erlang B blocking probability for ``offered`` erlangs on ``servers`` (stable recursion)."""
    if servers < 1 or offered < 0:
        raise CoreError(f"erlang_b needs servers >= 1 and offered >= 0, got {servers}, {offered}")
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return blocking


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/n with ``offered`` = lambda / mu < ``servers``."""
    if not offered < servers:
        raise CoreError(f"erlang_c needs offered < servers (stable), got {offered} >= {servers}")
    blocking = erlang_b(servers, offered)
    return servers * blocking / (servers - offered * (1 - blocking))


def erlang_c_wait_ms(servers: int, arrival_per_s: float, service_per_s: float) -> float:
    """Mean wait in queue (ms) of M/M/n: ``C(n, a) / (n * mu - lambda)``."""
    _check_rates(arrival_per_s, service_per_s)
    offered = arrival_per_s / service_per_s
    waiting = erlang_c(servers, offered)
    return 1000.0 * waiting / (servers * service_per_s - arrival_per_s)


def erlang_c_wait_over(
    servers: int, arrival_per_s: float, service_per_s: float, over_ms: float
) -> float:
    """P(wait > ``over_ms``) in M/M/n: ``C(n, a) * exp(-(n * mu - lambda) * t)``; with
    ``servers`` = 1 it is M/M/1's ``rho * exp(-(mu - lambda) * t)``."""
    _check_rates(arrival_per_s, service_per_s)
    waiting = erlang_c(servers, arrival_per_s / service_per_s)
    return waiting * math.exp(-(servers * service_per_s - arrival_per_s) * over_ms / 1000.0)


def mm1_wait_ms(arrival_per_s: float, service_per_s: float) -> float:
    """Mean wait in queue (ms) of M/M/1: ``rho / (mu - lambda)``."""
    _check_rates(arrival_per_s, service_per_s)
    if not arrival_per_s < service_per_s:
        raise CoreError(f"mm1 needs lambda < mu (stable), got {arrival_per_s} >= {service_per_s}")
    rho = arrival_per_s / service_per_s
    return 1000.0 * rho / (service_per_s - arrival_per_s)


def _check_rates(arrival_per_s: float, service_per_s: float) -> None:
    if arrival_per_s < 0 or service_per_s <= 0:
        raise CoreError(f"rates must be lambda >= 0, mu > 0, got {arrival_per_s}, {service_per_s}")
