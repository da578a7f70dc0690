"""``python -m streams.adapters.dispatcher``: the dispatcher as a plain Faust worker, with the
settings from ``TASKD_*`` variables (or ``$TASKD_CONFIG``) and the default timings."""

from __future__ import annotations

import logging

from streams.adapters.dispatcher.config import DispatcherConfig
from streams.adapters.dispatcher.runtime import Dispatcher, run_worker
from streams.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_worker(Dispatcher(load_settings(), DispatcherConfig()))


if __name__ == "__main__":
    main()
