"""The search for the sustained rate, without a broker: the verdict on one probe and the
bisection over probes (a fake pipeline that keeps up below a given rate)."""

from __future__ import annotations

from taskd_lab.bench.measure import Latency
from taskd_lab.bench.sustained import Probe, bisect, judge


def _latency(rate: float, p99_ms: float) -> Latency:
    return Latency(
        rate_tps=rate, count=100, p50_ms=1.0, p99_ms=p99_ms, max_ms=p99_ms, achieved_tps=rate
    )


def test_a_probe_passes_only_with_a_small_backlog_and_a_low_p99() -> None:
    assert judge(200.0, _latency(200.0, 40.0), backlog=200, p99_limit_ms=50.0).passed
    assert not judge(200.0, _latency(200.0, 40.0), backlog=201, p99_limit_ms=50.0).passed
    assert not judge(200.0, _latency(200.0, 51.0), backlog=0, p99_limit_ms=50.0).passed
    assert judge(0.2, _latency(0.2, 1.0), backlog=1, p99_limit_ms=50.0).bound == 1


def test_probes_bisect_from_half_the_maximum() -> None:
    def keeps_up_below_300(rate: float) -> Probe:
        return judge(rate, _latency(rate, 10.0 if rate < 300 else 500.0), 0, 50.0)

    probes = bisect(keeps_up_below_300, 1_000.0, 5)
    assert [probe.rate_tps for probe in probes] == [500.0, 250.0, 375.0, 312.5, 281.2]
    assert [probe.passed for probe in probes] == [False, True, False, False, True]
