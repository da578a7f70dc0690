"""The scheduler: priority with aging, earliest deadline first, fair share, quotas, late binding.

Pure core: standard library only, time passed in as ``now_ms``. Offer tasks, then release them
to a :class:`Placer` (the router) whenever slots may have freed; call ``expire`` on every tick
and sleep until ``next_wakeup_ms``. See ``scheduler.py`` for the invariants and the aging bound.
"""

from streams.core.scheduling.config import SchedulerConfig
from streams.core.scheduling.outcomes import OfferResult, Released, Removed
from streams.core.scheduling.placement import NEVER, NeverPlaceable, Placer
from streams.core.scheduling.priority import ESCALATED, effective_priority, next_change_ms
from streams.core.scheduling.scheduler import Scheduler

__all__ = [
    "ESCALATED",
    "NEVER",
    "NeverPlaceable",
    "OfferResult",
    "Placer",
    "Released",
    "Removed",
    "Scheduler",
    "SchedulerConfig",
    "effective_priority",
    "next_change_ms",
]
