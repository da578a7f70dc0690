"""Shorter pauses of Python's garbage collector in the long-running processes.

A full collection scans every object the collector tracks. In a dispatcher or an agent most of
them are made at start-up (modules, classes, clients, schemas) and live as long as the process,
yet each full collection under load scans them again: pauses of 50 to 100 ms were measured, and
each one delays every task in flight. Once a process is ready, :func:`settle` moves what is alive
then out of the collector's reach (``gc.freeze``), so later collections scan only what the work
itself made. Reference counting still frees frozen objects; only cycles among them are kept.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what start-up left, then freeze what is alive: call once, when ready."""
    gc.collect()
    gc.freeze()
