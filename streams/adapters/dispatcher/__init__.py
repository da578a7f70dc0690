"""The dispatcher: a Faust app driving the pure core (``docs/dispatcher.md``)."""

from streams.adapters.dispatcher.config import DispatcherConfig
from streams.adapters.dispatcher.runtime import Dispatcher, run_worker

__all__ = ["Dispatcher", "DispatcherConfig", "run_worker"]
