"""The one exception hierarchy of Task Distributor.

Every error the package raises on purpose derives from :class:`TaskdError`, grouped by layer,
so a caller can catch broadly (``TaskdError``) or precisely (``DecodeError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.wire.records import TaskOutcome


class TaskdError(Exception):
    """Root of every error raised by Task Distributor."""


class ConfigError(TaskdError):
    """Settings or a scenario file are invalid; the message names the field and the problem."""


class CoreError(TaskdError):
    """The pure core was used wrongly (unknown agent, a task submitted twice, ...)."""


class WireError(TaskdError):
    """Records could not be encoded or decoded."""


class EncodeError(WireError):
    """A record does not fit its schema."""


class DecodeError(WireError):
    """Bytes or JSON could not be turned into a record.

    Carries the raw input and where it came from, so the dead letter can keep both.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: bytes | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.raw = raw
        self.source = source


class TooLargeError(DecodeError):
    """A task over a size limit (its id, type, payload or headers): dead-lettered TOO_LARGE."""


class RegistryError(WireError):
    """The schema registry could not be reached or answered wrongly; the cause is kept.

    Not a DecodeError: the bytes may be fine, so they must not be dead-lettered as MALFORMED.
    """


class KafkaError(TaskdError):
    """The broker or a Kafka client failed; the client error is kept as ``__cause__``."""


class TopicError(KafkaError):
    """Topics could not be created or described."""


class DeliveryError(KafkaError):
    """Records handed to a producer were not confirmed by the broker.

    ``failed``: deliveries the broker or the client reported as failed; ``unconfirmed``: still
    unanswered when the wait ran out; ``first_error``: the first failure's text, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        failed: int,
        unconfirmed: int = 0,
        first_error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failed = failed
        self.unconfirmed = unconfirmed
        self.first_error = first_error


class TaskFailedError(TaskdError):
    """A task waited for did not succeed: it is in the dead letters, or it was cancelled.

    ``outcome`` is its :class:`~streams.wire.TaskOutcome`: the reason, the error, the attempts.
    """

    def __init__(self, outcome: TaskOutcome) -> None:
        reason = outcome.dead_letter_reason
        how = "was cancelled" if reason is None else f"is dead-lettered {reason.value}"
        error = "" if outcome.error is None else f": {outcome.error}"
        super().__init__(
            f"task {outcome.task_id} ({outcome.type}) {how} after {outcome.attempts} "
            f"attempt(s){error}"
        )
        self.outcome = outcome


class ResultTimeoutError(TaskdError, TimeoutError):
    """Tasks waited for had not ended when the wait ran out; ``pending``: how many."""

    def __init__(self, message: str, *, pending: int) -> None:
        super().__init__(message)
        self.pending = pending
