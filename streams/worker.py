"""Write an agent: a handler per task type, sync or async, run up to the agent's capacity.

```python
from streams.worker import Agent, AgentConfig, RetryableError, Task

async def resize(task: Task) -> bytes:
    ...

agent = Agent(AgentConfig(agent_id="a1", capacity=4, handlers={"resize": resize}), settings)
await agent.run()          # until agent.stop(): then drains and returns
```

A handler's return value is the result's output (bytes as they are, text as UTF-8, None as no
output, anything else as JSON); :class:`RetryableError` (or any unexpected exception) makes the
result RETRYABLE, :class:`FatalError` FAILED. ``@batch(max_size=N, max_wait_ms=M)`` marks a
handler that takes a list of tasks and returns a list of outputs. On the command line:
``taskd agent --capacity 4 --handler module:function``.
"""

from streams.adapters.worker import (
    Agent,
    AgentConfig,
    AgentError,
    FatalError,
    HandlerError,
    Ready,
    RetryableError,
    batch,
)
from streams.adapters.worker.cancel import cancelled
from streams.wire import Task

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "FatalError",
    "HandlerError",
    "Ready",
    "RetryableError",
    "Task",
    "batch",
    "cancelled",
]
