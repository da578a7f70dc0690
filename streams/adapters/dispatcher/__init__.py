"""The dispatcher: a batch hot path on Kafka around the pure core (``docs/dispatcher.md``)."""

from streams.adapters.dispatcher.config import DispatcherConfig
from streams.adapters.dispatcher.runtime import Dispatcher, run_dispatcher

__all__ = ["Dispatcher", "DispatcherConfig", "run_dispatcher"]
