"""Task Distributor for applications: ``import taskd``.

```python
import taskd

app = taskd.App()

@app.task("resize", priority=1)
def resize(w: int, h: int) -> dict:
    return {"pixels": w * h}

print(resize.submit(w=64, h=48).result(timeout=30))
```

Run its agents with ``taskd agent --app module:app --capacity 4``. The lower-level API stays
in :mod:`streams.client` (TaskClient) and :mod:`streams.worker` (Agent).
"""

from streams.adapters.replies import TaskHandle
from streams.adapters.worker.cancel import cancelled
from streams.app import App, AppTask, Fail, Retry
from streams.errors import ResultTimeoutError, TaskdError, TaskFailedError
from streams.settings import Settings, load_settings
from streams.wire import OutcomeStatus, TaskOutcome

__all__ = [
    "App",
    "AppTask",
    "Fail",
    "OutcomeStatus",
    "ResultTimeoutError",
    "Retry",
    "Settings",
    "TaskFailedError",
    "TaskHandle",
    "TaskOutcome",
    "TaskdError",
    "cancelled",
    "load_settings",
]
