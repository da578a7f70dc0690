"""The live view of a run in the terminal (rich): progress, queue depth by priority, load per
agent, dead letters. Without a terminal, one plain line every few seconds instead."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from taskd_lab.demo.run import Progress, Show

_PLAIN_EVERY_S = 5.0
_BAR = 20


@contextmanager
def live_view(console: Console) -> Iterator[Show]:
    """A ``show`` callback for ``run_plan``: live on a terminal, plain lines otherwise."""
    if not console.is_terminal:
        yield _plain(console)
        return
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def show(progress: Progress) -> None:
            live.update(render(progress))

        yield show


def render(progress: Progress) -> Group:
    """The view of one tick."""
    return Group(_headline(progress), _queues(progress), _agents(progress))


def _headline(progress: Progress) -> Text:
    snap, total = progress.snapshot, len(progress.plan.workload.arrivals)
    dead = sum(snap.dead.values())
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(snap.dead.items()))
    text = Text.assemble(
        (f"{progress.plan.strategy}", "bold cyan"),
        f"  {progress.phase}  {progress.elapsed_s:5.0f} s   submitted {snap.submitted:,}/{total:,}",
        f"   distributed {snap.distributed:,}   completed ",
        (f"{snap.completed:,}", "bold green"),
        "   dead letters ",
        (f"{dead:,}", "bold red" if dead else ""),
        f" ({reasons})" if reasons else "",
    )
    if progress.killed and progress.plan.killed:
        text.append(f"   {progress.plan.killed} killed (SIGKILL)", style="yellow")
    return text


def _queues(progress: Progress) -> Table:
    waiting = progress.snapshot.waiting
    grid = Table(title="waiting to start, by priority", title_justify="left", box=None)
    for level in waiting:
        grid.add_column(f"p{level}", justify="right")
    grid.add_row(*(f"{count:,}" for count in waiting.values()))
    return grid


def _agents(progress: Progress) -> Table:
    grid = Table("agent", "slots busy", "", "queued at agent", "results", box=None)
    snap = progress.snapshot
    for spec in progress.plan.fleet:
        held = snap.held.get(spec.agent_id, 0)
        busy = min(held, spec.capacity)
        dead = progress.killed and spec.agent_id == progress.plan.killed
        filled = round(_BAR * busy / spec.capacity)
        bar = Text("█" * filled + "·" * (_BAR - filled), style="red" if dead else "green")
        label = f"{spec.agent_id}" + (" (killed)" if dead else "")
        grid.add_row(
            label,
            bar,
            f"{busy}/{spec.capacity}",
            f"{max(0, held - spec.capacity):,}",
            f"{snap.done.get(spec.agent_id, 0):,}",
        )
    return grid


def _plain(console: Console) -> Show:
    last = [0.0]

    def show(progress: Progress) -> None:
        if time.monotonic() - last[0] < _PLAIN_EVERY_S:
            return
        last[0] = time.monotonic()
        snap = progress.snapshot
        waiting = " ".join(f"p{level}={count}" for level, count in snap.waiting.items())
        console.print(
            f"{progress.plan.strategy} {progress.elapsed_s:.0f}s: submitted {snap.submitted}, "
            f"completed {snap.completed}, dead {sum(snap.dead.values())}, waiting {waiting}",
            highlight=False,
        )

    return show
