"""The demo, ``taskd demo``: the reference workload live through Kafka (dispatcher and agents as
real processes, running the example handler ``streams.examples:work``), and the same plan
through the simulator to show the live-against-simulated gap (``simulated``, ``gap``)."""
