"""Grouping for batch handlers: the tasks of a type go together to one agent, up to the size of
its batch handler, a group that is not full held at most a maximum wait.

Pure core: no I/O, time passed in. ``handlers.py`` keeps what agents announce, ``waiting.py``
the held tasks per type, ``policy.py`` decides when a group goes, ``placer.py`` wraps the
routing placer of one release pass to hold and gather.
"""

from streams.core.grouping.config import GroupingConfig
from streams.core.grouping.handlers import BatchHandler, BatchHandlers, GroupLimit
from streams.core.grouping.placer import GroupingPlacer, SentGroup, TargetablePlacer
from streams.core.grouping.policy import Grouping
from streams.core.grouping.waiting import WaitingByType

__all__ = [
    "BatchHandler",
    "BatchHandlers",
    "GroupLimit",
    "Grouping",
    "GroupingConfig",
    "GroupingPlacer",
    "SentGroup",
    "TargetablePlacer",
    "WaitingByType",
]
