"""The dispatcher: a batch hot path on Kafka around the pure core (``docs/dispatcher.md``)."""

from streams.adapters.dispatcher.runtime import Dispatcher, run_dispatcher
from streams.dispatcher_config import DispatcherConfig

__all__ = ["Dispatcher", "DispatcherConfig", "run_dispatcher"]
