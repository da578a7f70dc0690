"""``--since`` of the commands that read a topic back (``taskd dlq``, ``taskd tail``)."""

from __future__ import annotations

import time

import typer

from streams.adapters.dlq import parse_since
from streams.errors import ConfigError

SINCE_HELP = "ISO-8601 (UTC unless stated) or an age: 90s, 15m, 2h, 7d"


def since_option_ms(text: str) -> int:
    """The time ``--since`` names, in ms since the epoch; a usage error when it names none."""
    try:
        return parse_since(text, now_ms=time.time_ns() // 1_000_000)
    except ConfigError as error:
        raise typer.BadParameter(str(error).removeprefix("since: "), param_hint="--since") from None
