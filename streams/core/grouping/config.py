"""The dispatcher's side of grouping: on or off, and how long a group that is not full waits."""

from __future__ import annotations

from dataclasses import dataclass

from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class GroupingConfig:
    """Grouping for batch handlers (``[dispatcher] group_batches``, ``group_max_wait_ms``)."""

    enabled: bool = True
    """Group the tasks of a type whose agents announce a batch handler; off: each task is
    placed on its own, as for any other type."""
    max_wait_ms: int = 50
    """The longest a group that is not full is held at the dispatcher; the agents' own
    ``max_wait_ms`` bounds it further (the smaller of the two applies)."""

    def __post_init__(self) -> None:
        if self.max_wait_ms < 0:
            raise ConfigError(f"group_max_wait_ms must be >= 0 (got {self.max_wait_ms})")
