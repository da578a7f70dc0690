"""The worker runtime (agent SDK): claim a dispatch partition, run tasks, report results.

The public face is :mod:`streams.worker`; the claim protocol is in ``docs/protocol.md``.
"""

from streams.adapters.worker.batching import batch
from streams.adapters.worker.config import AgentConfig, HandlerRef, default_agent_id
from streams.adapters.worker.errors import AgentError, FatalError, HandlerError, RetryableError
from streams.adapters.worker.runtime import Agent, Ready

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "FatalError",
    "HandlerError",
    "HandlerRef",
    "Ready",
    "RetryableError",
    "batch",
    "default_agent_id",
]
