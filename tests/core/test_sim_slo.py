"""SLOs for ``taskd plan``: what parses, what each term means, and one line per mistake."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.sim.slo import METRICS, Figures, SloError, parse_slo

FIGURES = Figures(
    mean_queue_ms=120.0,
    p50_queue_ms=40,
    p99_queue_ms=480,
    deadline=0.995,
    completion=1.0,
    utilization=0.7,
)


def test_the_issue_s_example_parses_to_its_two_bounds() -> None:
    slo = parse_slo("p99_queue<500ms,deadline>99%")
    assert [(o.metric, o.op, o.value) for o in slo.objectives] == [
        ("p99_queue", "<", 500.0),
        ("deadline", ">", 0.99),
    ]
    assert slo.text == "p99_queue<500ms,deadline>99%"
    assert slo.met(FIGURES)


@pytest.mark.parametrize(
    ("text", "met"),
    [
        ("p99_queue<480ms", False),
        ("p99_queue<=480ms", True),
        ("p99_queue < 0.5s", True),
        ("mean_queue<0.1s", False),
        ("p50_queue<=40ms", True),
        ("deadline>=99.5%", True),
        ("deadline>99.5%", False),
        ("completion>=100%", True),
        ("utilization<70%", False),
        ("utilization>=70%", True),
        (" utilization > 60% , utilization < 80% ", True),
    ],
)
def test_a_term_is_met_as_its_comparison_says(text: str, met: bool) -> None:
    assert parse_slo(text).met(FIGURES) is met


def test_a_missing_figure_never_meets_a_bound() -> None:
    empty = Figures(None, None, None, None, 0.0, 0.0)
    for text in ("p99_queue<1s", "mean_queue<1s", "deadline>0%"):
        assert not parse_slo(text).met(empty)


def test_only_a_lower_bound_on_utilization_is_one_fewer_agents_help_with() -> None:
    slo = parse_slo("p99_queue<1s,deadline>90%,completion>99%,utilization<90%,utilization>50%")
    assert [o.helped for o in slo.objectives] == [True, True, True, True, False]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("p98_queue<1s", "unknown metric 'p98_queue'"),
        ("p99_queue>1s", "bad comparison '>': p99_queue takes < or <="),
        ("deadline<99%", "bad comparison '<': deadline takes > or >="),
        ("p99_queue=1s", "bad comparison '='"),
        ("p99_queue 1s", "no comparison"),
        ("p99_queue<1min", "bad unit 'min': p99_queue takes ms or s"),
        ("p99_queue<500", "no unit: p99_queue takes ms or s"),
        ("deadline>99", "no unit: deadline takes a percentage (%)"),
        ("deadline>0.99s", "bad unit 's'"),
        ("completion>101%", "completion is at most 100%"),
        ("p99_queue<fast", "expected a number and its unit"),
        ("p99_queue<1s,", "an empty term"),
        ("p99_queue<1s,p99_queue<=2s", "p99_queue is bounded from above twice"),
    ],
)
def test_each_mistake_is_one_line_naming_it(text: str, says: str) -> None:
    with pytest.raises(SloError) as raised:
        parse_slo(text)
    (line,) = raised.value.mistakes
    assert says in line
    assert "\n" not in line


def test_every_mistake_of_an_slo_is_told_not_only_the_first() -> None:
    with pytest.raises(SloError) as raised:
        parse_slo("p98_queue<1s,deadline<99%,p99_queue<2h,utilization<80%")
    assert len(raised.value.mistakes) == 3
    assert str(raised.value) == "; ".join(raised.value.mistakes)


_TIME = st.sampled_from(["mean_queue", "p50_queue", "p99_queue"])


@given(
    st.lists(
        st.one_of(
            st.tuples(_TIME, st.sampled_from(["<", "<="]), st.integers(0, 10**6), st.just("ms")),
            st.tuples(
                st.sampled_from(["deadline", "completion"]),
                st.sampled_from([">", ">="]),
                st.integers(0, 100),
                st.just("%"),
            ),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda term: term[0],
    )
)
def test_written_terms_parse_to_their_values(terms: list[tuple[str, str, int, str]]) -> None:
    slo = parse_slo(",".join(f"{m}{op}{v}{unit}" for m, op, v, unit in terms))
    for objective, (metric, op, value, unit) in zip(slo.objectives, terms, strict=True):
        assert objective.metric in METRICS
        assert (objective.metric, objective.op) == (metric, op)
        assert objective.value == pytest.approx(value if unit == "ms" else value / 100)
