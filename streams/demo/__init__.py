"""The demo: the built-in work handler ``streams.demo:work`` and ``taskd demo``, the reference
workload live through Kafka (dispatcher and agents as real processes), and the same plan
through the simulator to show the live-against-simulated gap (``simulated``, ``gap``).

Only the handler is imported here: every agent imports this package, and the demo's own
modules (rich, matplotlib) would slow its start for nothing.
"""

from streams.demo.handler import parse_payload, work

__all__ = ["parse_payload", "work"]
