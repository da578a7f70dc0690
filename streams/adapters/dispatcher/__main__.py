"""``python -m streams.adapters.dispatcher``: one dispatcher with the settings from ``TASKD_*``
variables (or ``$TASKD_CONFIG``), its [dispatcher] table included."""

from __future__ import annotations

import sys

from streams.adapters.dispatcher.runtime import Dispatcher, run_dispatcher
from streams.adapters.logs import setup_logging
from streams.settings import load_settings


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    sys.exit(run_dispatcher(Dispatcher(settings, settings.dispatcher)))


if __name__ == "__main__":
    main()
