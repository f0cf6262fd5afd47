"""Report maths: table-driven definitions and properties over arbitrary consistent tallies."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.rates import COUNT_FIELDS, RATE_FIELDS, Tally, figures, ratio

ENGAGEMENT = ("responders", "repliers", "clickers", "openers", "machine_openers", "opted_out", "converters")
RATE_OF = {
    "response_rate": "responders",
    "click_rate": "clickers",
    "reply_rate": "repliers",
    "open_rate": "openers",
    "machine_open_rate": "machine_openers",
    "optout_rate": "opted_out",
    "conversion_rate": "converters",
    "complaint_rate": "complained",
}


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(0, 0, None), (5, 0, None), (0, 4, 0.0), (3, 4, 0.75), (4, 4, 1.0), (1, 3, 1 / 3), (7, -1, None)],
)
def test_ratio(numerator: int, denominator: int, expected: float | None) -> None:
    assert ratio(numerator, denominator) == expected


@pytest.mark.parametrize(
    ("tally", "expected"),
    [
        (Tally(), {name: None for name in RATE_FIELDS}),
        (
            Tally(
                sent=10, delivered=8, responders=2, clickers=1, repliers=1, opted_out=1, cost=Decimal("0.08")
            ),
            {
                "arrival_rate": 0.8,
                "response_rate": 0.25,
                "click_rate": 0.125,
                "reply_rate": 0.125,
                "optout_rate": 0.125,
                "conversion_rate": 0.0,
                "bounce_rate": 0.0,
                "cost_per_delivered": Decimal("0.010000"),
                "cost_per_conversion": None,
            },
        ),
        (  # sent but no receipts yet: arrival is 0, engagement rates are undefined
            Tally(sent=5, clickers=2, cost=Decimal("0.05")),
            {"arrival_rate": 0.0, "response_rate": None, "click_rate": None, "cost_per_delivered": None},
        ),
        (
            Tally(
                sent=3, delivered=3, bounced=1, complained=1, converters=1, conversions=3, cost=Decimal("1")
            ),
            {
                "bounce_rate": 1 / 3,
                "complaint_rate": 1 / 3,
                "conversion_rate": 1 / 3,
                "cost_per_conversion": Decimal("0.333333"),
            },
        ),
    ],
)
def test_figures(tally: Tally, expected: dict[str, object]) -> None:
    shown = figures(tally)
    assert {name: getattr(shown, name) for name in expected} == expected
    assert shown.tally is tally


@st.composite
def tallies(draw: st.DrawFn) -> Tally:
    """Consistent tallies: delivered ⊆ sent, engaged ⊆ delivered, responders ⊇ clickers ∪ repliers."""
    sent = draw(st.integers(0, 10**7))
    delivered = draw(st.integers(0, sent))
    small = st.integers(0, delivered)
    clickers, repliers = draw(small), draw(small)
    return Tally(
        messages=sent + draw(st.integers(0, 1000)),
        sent=sent,
        delivered=delivered,
        clickers=clickers,
        repliers=repliers,
        responders=draw(st.integers(max(clickers, repliers), min(delivered, clickers + repliers))),
        openers=draw(small),
        machine_openers=draw(small),
        opted_out=draw(small),
        converters=draw(small),
        complained=draw(small),
        bounced=draw(st.integers(0, sent)),
        conversions=draw(st.integers(0, 10**6)),
        cost=draw(st.decimals(0, 10**6, places=6)),
    )


@given(tallies())
def test_rates_of_consistent_tallies_are_fractions(tally: Tally) -> None:
    shown = figures(tally)
    for name in ("arrival_rate", "bounce_rate", *RATE_OF):
        value = getattr(shown, name)
        assert value is None or 0.0 <= value <= 1.0, name
    if shown.response_rate is not None:
        assert shown.click_rate is not None
        assert shown.reply_rate is not None
        assert max(shown.click_rate, shown.reply_rate) <= shown.response_rate


@given(tallies())
def test_a_rate_is_null_exactly_when_its_denominator_is_zero(tally: Tally) -> None:
    shown = figures(tally)
    assert (shown.arrival_rate is None) == (tally.sent == 0)
    for name in RATE_OF:
        assert (getattr(shown, name) is None) == (tally.delivered == 0), name
    assert (shown.cost_per_delivered is None) == (tally.delivered == 0)
    assert (shown.cost_per_conversion is None) == (tally.conversions == 0)


@given(tallies())
def test_cost_per_delivered_multiplies_back_to_the_cost(tally: Tally) -> None:
    per = figures(tally).cost_per_delivered
    if per is not None:
        assert abs(per * tally.delivered - tally.cost) <= Decimal("0.0000005") * tally.delivered


def test_every_count_is_published() -> None:
    assert set(ENGAGEMENT) <= set(COUNT_FIELDS)
    assert len(RATE_FIELDS) == len(set(RATE_FIELDS)) == 12
