"""What the scheduler asks of whoever chooses agents (the router, wired in by the distributor).

The scheduler decides *which* task goes next and *when*; a :class:`Placer` decides *where*.
``place`` answers for one job, at once, from the live state of the agents:

- an agent id: that agent took the job and one of its slots is now used;
- ``None``: some agent could run the job but none has a free slot right now;
- :data:`NEVER`: no agent at all could run it (skills, manual target), busy or not.

``total_slots`` and ``free_slots`` are read live, for the capacity kept for urgent work.
Within one release call nothing frees a slot, so a ``None`` stays true for the rest of the call.
"""

from __future__ import annotations

import enum
from typing import Final, Protocol

from streams.core.model import Job


class NeverPlaceable(enum.Enum):
    """The type of :data:`NEVER`: a placer's answer that no agent is capable of the job."""

    NEVER = "NEVER"


NEVER: Final = NeverPlaceable.NEVER


class Placer(Protocol):
    """Chooses an agent for a job and takes its slot; see the module docstring."""

    @property
    def total_slots(self) -> int:
        """Slots of every agent that may take work."""
        ...

    @property
    def free_slots(self) -> int:
        """Slots free right now."""
        ...

    def place(self, job: Job) -> str | NeverPlaceable | None:
        """An agent id (its slot is now taken), None (all capable agents busy) or NEVER."""
        ...
