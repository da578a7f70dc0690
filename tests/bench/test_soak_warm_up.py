"""The soak's warm-up: memory is judged once each process's windows are full."""

from __future__ import annotations

import pytest

from streams.adapters.worker.config import SEEN_ATTEMPTS
from taskd_lab.soak import WARM_UP, warm_up_s, windows_filled_at


def test_an_agent_is_judged_from_its_own_window_filled_not_from_an_even_share() -> None:
    started = 1_000.0
    busy = [started + i * 0.001 for i in range(SEEN_ATTEMPTS)]  # filled after 100 s
    idle = [started + i * 0.004 for i in reversed(range(SEEN_ATTEMPTS + 5))]  # 400 s, unsorted
    few = [started + 1.0]
    filled = windows_filled_at({"a0": busy, "a1": idle, "a2": few}, started)
    assert set(filled) == {"a0", "a1"}  # a2 never filled its window
    assert filled["a0"] == pytest.approx((SEEN_ATTEMPTS - 1) * 0.001, abs=1e-6)
    assert filled["a1"] == pytest.approx((SEEN_ATTEMPTS - 1) * 0.004, abs=1e-6)
    elapsed = 1_800.0
    assert warm_up_s(elapsed, filled["a1"]) == filled["a1"]
    assert warm_up_s(elapsed, filled["a0"]) == WARM_UP * elapsed  # filled within the share
    assert warm_up_s(elapsed, None) == WARM_UP * elapsed


def test_a_window_filled_too_late_to_judge_after_it_counts_the_filling() -> None:
    elapsed = 1_000.0
    assert warm_up_s(elapsed, 0.95 * elapsed) == WARM_UP * elapsed
