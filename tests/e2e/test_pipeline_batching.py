"""Grouping for batch handlers on the real broker: agents with a batch handler
(``streams.examples:embed``, at most 16 tasks a call, 50 ms wait) and a steady stream of its
tasks. With grouping the handler is called with full batches of 16; without, the tasks
trickle to the agents a few at a time and its calls are smaller and many more. Every task
completes once either way. The figures come from the handler's own outputs (each names its
call and the call's size); the load and the reading are ``taskd_lab.bench.batching``'s."""

from __future__ import annotations

from taskd_lab.bench.batching import Load, side_by_side


def test_grouping_feeds_a_batch_handler_full_batches_and_without_it_they_stay_small(
    bootstrap_servers: str,
) -> None:
    load = Load(tasks=800, rate_per_s=400, agents=8, capacity=16)
    grouped, spread = side_by_side(bootstrap_servers, load)
    for run in (grouped, spread):
        assert run.succeeded == load.tasks and run.ran_twice == 0, run
    assert grouped.mean_batch >= 12, grouped  # close to the handler's max_size of 16
    assert spread.mean_batch <= grouped.mean_batch / 1.5, (grouped, spread)
    assert spread.calls >= 1.5 * grouped.calls, (grouped, spread)
