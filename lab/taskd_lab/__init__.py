"""The lab: ``taskd demo``, ``taskd bench`` and the micro-benchmarks, with the Celery and
Dramatiq peers the benchmark compares against.

It is not part of the runtime package (``streams``) and not in its wheel: it runs from a source
checkout, where ``make setup`` installs it (``lab/pyproject.toml``), because it reads the
repository around it: the reference scenario (``scenarios/``), the scripts that fetch Redis and
Kafka (``scripts/``) and the benchmark page it regenerates (``docs/benchmarks.md``).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository checkout the lab lives in."""
