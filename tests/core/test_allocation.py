"""Placing one recipient: address per channel, deterministic A/B and pilot draws, local-time first send."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatcher.core.allocation import (
    AudiencePlanner,
    CampaignShape,
    Recipient,
    address_for,
    draw,
    in_pilot,
    pick_variant,
    weights_of,
)
from dispatcher.core.windows import DEFAULT_QUIET, DEFAULT_WINDOWS
from dispatcher.errors import InputError

START = datetime(2030, 1, 14, 0, 0, tzinfo=UTC)  # a Monday in winter: 19:00 in New York, 16:00 in LA


def shape(**changes: object) -> CampaignShape:
    values: dict[str, object] = {
        "campaign_id": 7, "channel": "sms", "weights": (("A", 1),), "pilot_percent": None,
        "windows": DEFAULT_WINDOWS, "allowed": DEFAULT_QUIET, "start": START,
        "end": START + timedelta(days=7), "list_zone": None,
    }  # fmt: skip
    values.update(changes)
    return CampaignShape(**values)  # type: ignore[arg-type]


def person(cid: int, phone: str | None = "+12125550100", zones: tuple[str, ...] = ("America/New_York",),
           email: str | None = None, capable: bool = True, zone: str | None = None) -> Recipient:  # fmt: skip
    return Recipient(cid, phone, email, capable, zones, zone)


@pytest.mark.parametrize(
    ("channel", "recipient", "address"),
    [
        ("sms", person(1), "+12125550100"),
        ("sms", person(1, capable=False), None),
        ("sms", person(1, phone=None, email="a@example.com"), None),
        ("email", person(1, email="a@example.com"), "a@example.com"),
        ("email", person(1), None),
    ],
)
def test_address_per_channel(channel: str, recipient: Recipient, address: str | None) -> None:
    assert address_for(channel, recipient) == address


def test_draws_are_stable_and_independent_per_salt() -> None:
    assert draw(1, 2, "variant") == draw(1, 2, "variant")
    assert draw(1, 2, "variant") != draw(1, 2, "pilot")
    assert draw(1, 2, "variant") != draw(2, 1, "variant")
    assert all(0 <= draw(3, n, "x") < 1 for n in range(1000))


@pytest.mark.parametrize(
    ("weights", "point", "expected"),
    [
        ((("A", 1), ("B", 1)), 0.0, "A"),
        ((("A", 1), ("B", 1)), 0.4999, "A"),
        ((("A", 1), ("B", 1)), 0.5, "B"),
        ((("A", 3), ("B", 1)), 0.74, "A"),
        ((("A", 3), ("B", 1)), 0.76, "B"),
        ((("A", 0), ("B", 1)), 0.0, "B"),
        ((("A", 1),), 0.99, "A"),
    ],
)
def test_pick_variant_by_weight(weights: tuple[tuple[str, int], ...], point: float, expected: str) -> None:
    assert pick_variant(weights, point) == expected


def test_zero_weights_and_bad_weights_are_refused() -> None:
    with pytest.raises(InputError):
        pick_variant((("A", 0),), 0.3)
    with pytest.raises(InputError):
        weights_of({"A": {"weight": -1}})
    assert weights_of({"B": {"weight": 1}, "A": {"weight": 3}}) == (("A", 3), ("B", 1))


def test_split_follows_weights_over_many_recipients() -> None:
    counts = Counter(pick_variant((("A", 3), ("B", 1)), draw(9, n, "variant")) for n in range(4000))
    assert 0.72 < counts["A"] / 4000 < 0.78
    pilots = sum(in_pilot(10, draw(9, n, "pilot")) for n in range(4000))
    assert 0.08 < pilots / 4000 < 0.12
    assert not in_pilot(None, 0.0)


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        (("America/Los_Angeles",), START),  # 16:00 local: inside 15:00-17:00 already
        (("America/New_York",), datetime(2030, 1, 14, 15, 30, tzinfo=UTC)),  # next 10:30 EST
        (
            ("America/Adak", "America/Anchorage"),
            datetime(2030, 1, 14, 1, 0, tzinfo=UTC),
        ),  # 16:00 AKST/15:00 HST
    ],
)
def test_first_send_inside_every_zone(zones: tuple[str, ...], expected: datetime) -> None:
    placed = AudiencePlanner(shape()).place(person(5, zones=zones), suppressed=False)
    assert placed is not None
    assert placed.state == "planned"
    assert placed.not_before == expected
    for name in zones:
        local = expected.astimezone(ZoneInfo(name)).time()
        assert any(w.contains(local) for w in DEFAULT_WINDOWS)


def test_expired_suppressed_and_excluded() -> None:
    planner = AudiencePlanner(shape(end=START + timedelta(minutes=30)))
    expired = planner.place(person(1), suppressed=False)
    assert expired is not None
    assert expired.state == "expired"
    assert expired.not_before is None
    suppressed = planner.place(person(2, zones=("America/Los_Angeles",)), suppressed=True)
    assert suppressed is not None
    assert suppressed.state == "suppressed"
    assert planner.place(person(3, capable=False), suppressed=False) is None


def test_unknown_number_zone_falls_back_to_contact_then_list_zone() -> None:
    planner = AudiencePlanner(shape(list_zone="America/Los_Angeles"))
    assert planner.zones(person(1, zones=("Etc/Unknown",), zone="America/New_York")) == ("America/New_York",)
    assert planner.zones(person(1, zones=())) == ("America/Los_Angeles",)
