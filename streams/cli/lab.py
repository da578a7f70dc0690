"""The commands whose code lives in the lab (``taskd demo``, ``taskd bench``), reached only
when one of them runs: the lab ships with a source checkout, not with the wheel, and the rest of
the CLI must start without it (and without its matplotlib and psutil)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from streams.errors import ConfigError


@contextlib.contextmanager
def lab_imports(command: str) -> Iterator[None]:
    """Around the lab's imports: a missing lab, or a package it needs, is one ConfigError line
    saying where the command runs from."""
    try:
        yield
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"taskd {command} runs from a source checkout of Task Distributor, with its lab "
            f"installed (make setup, or pip install -e ./lab): {error}"
        ) from error
