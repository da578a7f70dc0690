"""Work stealing between dispatcher instances: the remedy the simulator measures for sharding.

Static sharding wastes capacity: one instance may hold tasks while another has free slots,
and neither can use the other's (a global scheduler would). With ``steal_ms`` set, every
``steal_ms`` the instances compare notes (each publishes its free slots and its held tasks, as
it would on a compacted topic), and each instance with free slots and nothing held (a *thief*)
takes up to its free slots' worth of held tasks from the instances holding the most (its
*victims*), most urgent first. The victim withdraws them (the core's ``Withdrawn``, the same
hand-over as a revoked shard) and the thief takes them as arrivals: live, a hand-off through a
partition of the thief's. The task belongs to the thief from then on.

Thieves ask in turn, most free slots first, so two thieves never take the same task and a
victim never gives more than it holds: no central decision is needed, only the published
counts. Information is as old as one interval: what the interval buys is the price in wait.
Slots are never moved, so no agent can be over-committed by a steal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Steal:
    """``thief`` takes ``count`` of ``victim``'s held tasks (its most urgent)."""

    thief: int
    victim: int
    count: int


def plan_steals(free: Sequence[int], held: Sequence[int]) -> list[Steal]:
    """The steals of one round, given each instance's free slots and held tasks.

    Thieves (free > 0, nothing held) in order of most free slots (ties: lower one); each
    takes from the victims (held > 0) with the most held (ties: lower one) until its free
    slots are spoken for or nothing is left to take.
    """
    thieves = sorted(
        (shard for shard, slots in enumerate(free) if slots > 0 and held[shard] == 0),
        key=lambda shard: (-free[shard], shard),
    )
    left = list(held)
    steals: list[Steal] = []
    for thief in thieves:
        room = free[thief]
        while room > 0:
            victim = max(range(len(left)), key=lambda shard: (left[shard], -shard))
            if left[victim] == 0:
                return steals
            count = min(room, left[victim])
            steals.append(Steal(thief, victim, count))
            left[victim] -= count
            room -= count
    return steals
