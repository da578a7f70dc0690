"""A step repeated on the event loop while its task runs (heartbeats aside: they keep their
own pace): the dispatcher's checkpoints and gauges, the agents' log summaries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def every(interval_s: float, call: Callable[[], object], what: str) -> None:
    """Call ``call`` every ``interval_s`` until cancelled; a failure of one call is logged
    (naming ``what``) and the next still comes."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            call()
        except Exception:
            log.exception("%s failed; it runs again in %g s", what, interval_s)
