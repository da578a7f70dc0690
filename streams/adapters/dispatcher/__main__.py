"""``python -m streams.adapters.dispatcher``: one dispatcher with the settings from ``TASKD_*``
variables (or ``$TASKD_CONFIG``) and the default timings."""

from __future__ import annotations

import logging
import sys

from streams.adapters.dispatcher.config import DispatcherConfig
from streams.adapters.dispatcher.runtime import Dispatcher, run_dispatcher
from streams.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(run_dispatcher(Dispatcher(load_settings(), DispatcherConfig())))


if __name__ == "__main__":
    main()
