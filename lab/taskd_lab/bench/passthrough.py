"""The two passthrough programs of the floor benchmark, each run as a child process:

- ``loop``: a plain confluent-kafka consume -> produce -> commit loop (one process, the
  producer configured like our dispatcher's: idempotent, acks=all, linger 5 ms);
- ``faust``: a plain faust-streaming app whose one agent forwards each event to the output
  topic (Faust's defaults, in-memory store).

Both forward key and value unchanged, so the benchmark's observer matches records by key.

    python -m taskd_lab.bench.passthrough loop|faust --bootstrap HOST:PORT --source T --sink T2
        --group G [--datadir DIR]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from confluent_kafka import Consumer, Producer

from streams.adapters.kafka import PRODUCER_CONFIG
from taskd_lab.bench.measure import take

BATCH = 500


def confluent_loop(bootstrap: str, source: str, sink: str, group: str) -> None:
    """Consume a batch, produce each record, commit the batch; until SIGTERM or SIGINT."""
    stop = _stop_on_signals()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    consumer.subscribe([source])
    print("loop ready", flush=True)
    try:
        while not stop.is_set():
            messages = take(consumer, BATCH)
            for message in messages:
                if message.error() is None:
                    producer.produce(sink, message.value(), message.key())
            producer.poll(0)
            if messages:
                consumer.commit(asynchronous=True)
    finally:
        producer.flush(10)
        consumer.close()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def faust_passthrough(bootstrap: str, source: str, sink: str, group: str, datadir: str) -> None:
    """A Faust app forwarding ``source`` to ``sink``; Faust's worker owns the signals."""
    import faust  # the Faust import is slow: only the child that needs it pays for it

    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        autodiscover=False,
        env_prefix="TASKD_FAUST_",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        topic_allow_declare=False,
    )
    inbound = app.topic(source, key_serializer="raw", value_serializer="raw")
    outbound = app.topic(sink, key_serializer="raw", value_serializer="raw")

    async def forward(stream: Any) -> None:
        async for key, value in stream.items():
            await outbound.send(key=key, value=value)

    app.agent(inbound, name="forward")(forward)

    async def _ready() -> None:
        print("faust ready", flush=True)

    app.task(_ready)

    faust.Worker(app, loglevel="warning").execute_from_commandline()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m taskd_lab.bench.passthrough")
    parser.add_argument("kind", choices=("loop", "faust"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--datadir", default=".")
    args = parser.parse_args(argv)
    if args.kind == "loop":
        confluent_loop(args.bootstrap, args.source, args.sink, args.group)
    else:
        faust_passthrough(args.bootstrap, args.source, args.sink, args.group, args.datadir)


if __name__ == "__main__":
    main(sys.argv[1:])
