"""The dispatcher group as one instance sees it: every instance's shards and counts, and sums.

Each instance writes a :class:`DispatcherStatus` to the compacted ``dispatchers`` topic every
second, keyed by its name (``host:pid-tag``), and when it stops a last one saying ``stopped``, then
a tombstone (so compaction forgets it); the agents view (``agents_view.py``) reads the topic
from its beginning, so every instance knows the others. An instance not heard from for
``SILENT_AFTER_MS`` (killed: it wrote no last report) is shown as silent and left out of the
sums (its shards are another's by then), and after ``FORGET_AFTER_MS`` not shown at all.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import Iterable

from streams.core.stats import Summary
from streams.wire import DispatcherStatus

STOPPED = "stopped"
SILENT_AFTER_MS = 5_000
"""A report this old: the instance is gone (reports come every second)."""
FORGET_AFTER_MS = 600_000
"""A silent instance is shown this long, then left out (a killed one wrote no last report)."""
_COUNTS = ("tasks", "dispatched", "completed", "dead_lettered", "held", "in_flight")


_made = itertools.count(1)


def instance_name() -> str:
    """A dispatcher as the group knows it: ``host:pid``, a short random tag (containers often
    share a host name and run as pid 1), and ``.N`` for the N-th one made in the same process
    (tests run several)."""
    made = next(_made)
    suffix = "" if made == 1 else f".{made}"
    return f"{socket.gethostname()}:{os.getpid()}-{uuid.uuid4().hex[:4]}{suffix}"


def status_record(
    instance: str,
    state: str,
    shards: Iterable[int],
    figures: Summary,
    *,
    held: int,
    in_flight: int,
    now_ms: int,
) -> DispatcherStatus:
    """This instance's report, from its figures."""
    return DispatcherStatus(
        instance=instance,
        state=state,
        shards=tuple(sorted(shards)),
        tasks=figures.tasks,
        dispatched=figures.dispatched,
        completed=figures.completed,
        dead_lettered=sum(figures.dead_lettered.values()),
        held=held,
        in_flight=in_flight,
        sent_at=now_ms,
    )


class GroupView:
    """The latest report of every instance of the group, with when it arrived here (ages are
    counted on this host's clock: another host's may be off)."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[DispatcherStatus, int]] = {}

    def update(self, reports: Iterable[DispatcherStatus], now_ms: int) -> None:
        """Take ``reports`` received at ``now_ms``; forget instances silent for too long."""
        for report in reports:
            known = self._latest.get(report.instance)
            if known is not None and known[0].sent_at > report.sent_at:
                continue  # an instance's own reports are ordered by its own clock
            if report.state == STOPPED:
                self._latest.pop(report.instance, None)
            else:
                self._latest[report.instance] = (report, now_ms)
        for instance, (_, seen_ms) in list(self._latest.items()):
            if now_ms - seen_ms > FORGET_AFTER_MS:
                del self._latest[instance]

    def view(self, now_ms: int) -> dict[str, object]:
        """``instances`` (each report, its age and whether it is silent) and ``totals`` (the
        sums over the instances heard from, and the shards they own)."""
        shown = [
            (report, max(0, now_ms - seen_ms))
            for _, (report, seen_ms) in sorted(self._latest.items())
            if now_ms - seen_ms <= FORGET_AFTER_MS
        ]
        live = [report for report, age_ms in shown if age_ms <= SILENT_AFTER_MS]
        totals: dict[str, object] = {
            name: sum(getattr(report, name) for report in live) for name in _COUNTS
        }
        totals["instances"] = len(live)
        totals["shards"] = sorted(shard for report in live for shard in report.shards)
        return {"instances": [_entry(report, age) for report, age in shown], "totals": totals}


def _entry(report: DispatcherStatus, age_ms: int) -> dict[str, object]:
    entry: dict[str, object] = {"instance": report.instance, "state": report.state}
    entry["shards"] = list(report.shards)
    entry.update({name: getattr(report, name) for name in _COUNTS})
    entry["age_ms"] = age_ms
    entry["silent"] = age_ms > SILENT_AFTER_MS
    return entry
