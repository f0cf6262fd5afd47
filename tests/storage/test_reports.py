"""Report aggregation on PostgreSQL and SQLite against a ledger with known answers (see ``report_seed``)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.allocation import Recipient
from dispatcher.core.rates import Tally, figures
from dispatcher.storage import audience, reports
from dispatcher.storage.campaigns import Campaign, Message
from dispatcher.storage.contacts import Contact, ContactList
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.keys import get_or_create_workspace
from dispatcher.storage.report_periods import Offset, zone_offsets
from tests.storage.report_seed import PLANNED, Seeded, T, planned_zone, seed


@pytest.fixture
async def seeded(db_url: str) -> Seeded:
    return await seed(db_url)


@pytest.fixture
async def session(db_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(db_url)
    async with session_factory(engine)() as opened:
        yield opened
    await engine.dispose()


def _counts(tally: Tally, *names: str) -> dict[str, Any]:
    return {name: getattr(tally, name) for name in names}


async def _one(session: AsyncSession, scope: reports.Scope, grouping: reports.Grouping) -> dict[Any, Tally]:
    [groups] = await reports.aggregate(session, scope, [grouping])
    return {group.key: group.tally for group in groups}


async def test_campaign_totals(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.workspace_id, campaign_id=seeded.spring)
    total = (await _one(session, scope, ()))[()]
    assert total == Tally(
        messages=8, sent=6, delivered=4, failed=2, pending=0, suppressed=1,
        responders=3, repliers=2, clickers=2, machine_clickers=1, openers=1, machine_openers=1,
        opted_out=1, converters=1, conversions=2, conversion_value=Decimal("20.00"),
        cost=Decimal("0.045"), median_seconds_to_delivery=25.0,
    )  # fmt: skip
    shown = figures(total)
    assert shown.arrival_rate == 4 / 6
    assert shown.response_rate == 0.75
    assert shown.click_rate == 0.5
    assert shown.optout_rate == 0.25
    assert shown.cost_per_delivered == Decimal("0.011250")
    assert shown.cost_per_conversion == Decimal("0.022500")


async def test_per_batch_variant_and_channel_in_one_call(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.workspace_id, campaign_id=seeded.spring)
    by_batch, by_variant, by_channel, totals = await reports.aggregate(
        session, scope, [("batch",), ("variant",), ("channel",), ()]
    )
    names = (
        "messages",
        "sent",
        "delivered",
        "failed",
        "suppressed",
        "responders",
        "median_seconds_to_delivery",
    )
    assert {g.key: _counts(g.tally, *names) for g in by_batch} == {
        (seeded.pilot,): dict(zip(names, (3, 3, 2, 1, 0, 1, 15.0), strict=True)),
        (seeded.main,): dict(zip(names, (5, 3, 2, 1, 1, 2, 35.0), strict=True)),
    }
    assert {g.key: _counts(g.tally, *names) for g in by_variant} == {
        ("A",): dict(zip(names, (5, 4, 2, 2, 0, 2, 20.0), strict=True)),
        ("B",): dict(zip(names, (3, 2, 2, 0, 1, 1, 30.0), strict=True)),
    }
    assert [(g.key, g.tally.messages, g.tally.responders) for g in by_channel] == [(("sms",), 8, 3)]
    assert [g.tally.messages for g in totals] == [8]


async def test_workspace_groupings_leave_other_workspaces_out(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.workspace_id)
    by_campaign, by_provider, by_sender = await reports.aggregate(
        session, scope, [("campaign",), ("provider",), ("sender",)]
    )
    summary = {g.key: (g.tally.messages, g.tally.delivered, g.tally.responders) for g in by_campaign}
    assert summary == {(seeded.spring,): (8, 4, 3), (seeded.news,): (2, 1, 1)}
    assert [(g.key, g.tally.messages, g.tally.sent) for g in by_provider] == [
        ((seeded.alpha,), 6, 6),
        ((seeded.mailer,), 1, 1),
        ((None,), 3, 0),
    ]
    assert {g.key: g.tally.opted_out for g in by_sender} == {("+15005550006",): 1, ("news@shop.example",): 1}


@pytest.mark.parametrize(
    ("period", "local", "expected"),
    [
        ("day", False, {"2030-01-14": (6, 3, 2), "2030-01-15": (3, 3, 2), "2030-01-16": (1, 1, 1)}),
        ("day", True, {"2030-01-14": (3, 2, 2), "2030-01-15": (6, 4, 2), "2030-01-16": (1, 1, 1)}),
        ("week", True, {"2030-01-14": (10, 7, 5)}),
        ("month", False, {"2030-01-01": (10, 7, 5)}),
    ],
)
async def test_periods_in_utc_and_recipient_local_time(
    seeded: Seeded, session: AsyncSession, period: Any, local: bool, expected: dict[str, tuple[int, ...]]
) -> None:
    scope = reports.Scope(seeded.workspace_id, period=period, local=local)
    found = await _one(session, scope, ("period",))
    assert {key[0]: (t.messages, t.sent, t.delivered) for key, t in found.items()} == expected


async def test_period_with_other_dimensions(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.workspace_id, period="day")
    found = await _one(session, scope, ("channel", "period"))
    assert {key: t.messages for key, t in found.items()} == {
        ("email", "2030-01-14"): 1,
        ("email", "2030-01-16"): 1,
        ("sms", "2030-01-14"): 5,
        ("sms", "2030-01-15"): 3,
    }


async def test_time_bounds_filter_on_the_message_time(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.workspace_id, start=T, end=T + timedelta(days=1))
    total = (await _one(session, scope, ()))[()]
    assert (total.messages, total.sent, total.responders) == (6, 6, 3)  # rows 1-5 and 8 (sent T or T+1h)


async def test_failure_reasons(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.workspace_id, campaign_id=seeded.spring)
    assert await reports.failure_reasons(session, scope) == [("21211", 1), ("30003", 1)]


async def test_empty_scope_gives_zero_counts_and_null_rates(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.workspace_id, campaign_id=seeded.spring + seeded.news + 1000)
    total = (await _one(session, scope, ()))[()]
    assert total == Tally()
    assert figures(total).arrival_rate is None
    assert await _one(session, scope, ("batch",)) == {}


async def test_names_for_ids(seeded: Seeded, session: AsyncSession) -> None:
    found = await reports.names(
        session,
        seeded.workspace_id,
        [(("campaign", "batch"), (seeded.spring, seeded.pilot)), (("provider",), (seeded.alpha,))],
    )
    assert found == {
        ("campaign", seeded.spring): "spring",
        ("batch", seeded.pilot): f"P{seeded.spring}",
        ("provider", seeded.alpha): "alpha",
    }
    assert await reports.names(session, seeded.other_workspace_id, [(("campaign",), (seeded.spring,))]) == {}


async def test_local_days_follow_daylight_saving_changes(db_url: str, session: AsyncSession) -> None:
    # New York leaves summer time at 06:00 UTC on 3 November 2030: both rows fall on its local 3 November,
    # which a fixed offset (either one) would split over two days.
    engine = create_engine(db_url)
    async with session_factory(engine).begin() as writing:
        ws = await get_or_create_workspace(writing, "dst", now=PLANNED)
        people = ContactList(workspace_id=ws.id, name="p", created_at=PLANNED, updated_at=PLANNED)
        writing.add(people)
        await writing.flush()
        campaign = Campaign(workspace_id=ws.id, name="c", channel="sms", list_id=people.id)
        writing.add(campaign)
        for n, sent in enumerate(("2030-11-03T04:30:00+00:00", "2030-11-04T04:30:00+00:00")):
            contact = Contact(
                workspace_id=ws.id, list_id=people.id, dedupe_key=str(n), time_zones=["America/New_York"]
            )
            writing.add(contact)
            await writing.flush()
            at = datetime.fromisoformat(sent)
            writing.add(
                Message(
                    workspace_id=ws.id, campaign_id=campaign.id, contact_id=contact.id, channel="sms",
                    address=str(n), state="sent", sent_at=at, created_at=at, zone="America/New_York",
                )
            )  # fmt: skip
    await engine.dispose()
    scope = reports.Scope(ws.id, period="day", local=True)
    assert {k: t.messages for k, t in (await _one(session, scope, ("period",))).items()} == {
        ("2030-11-03",): 2
    }


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", [Offset(None, 0)]),
        ("No/Such_Zone", [Offset(None, 0)]),
        ("Asia/Kolkata", [Offset(None, 19800)]),
        (
            "America/New_York",
            [Offset(datetime(2030, 3, 10, 7, tzinfo=UTC), -18000), Offset(None, -14400)],
        ),
        (
            "Europe/Berlin",
            [Offset(datetime(2030, 3, 31, 1, tzinfo=UTC), 3600), Offset(None, 7200)],
        ),
    ],
)
def test_zone_offsets_find_each_change_to_the_second(zone: str, expected: list[Offset]) -> None:
    assert zone_offsets(zone, datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 4, 15, tzinfo=UTC)) == expected


async def test_empty_scope_with_groupings_and_totals(seeded: Seeded, session: AsyncSession) -> None:
    scope = reports.Scope(seeded.other_workspace_id, campaign_id=seeded.spring)
    by_batch, totals = await reports.aggregate(session, scope, [("campaign", "batch"), ()])
    assert by_batch == []
    assert [group.tally for group in totals] == [Tally()]


# zones with summer time on either hemisphere, half and three-quarter hour offsets, a field that overrides
# the number's zone, and no zone at all (UTC)
_ZONE_CHOICES: list[tuple[list[str], str | None]] = [
    (["America/New_York"], None), (["Australia/Sydney"], None), (["Asia/Kolkata"], None),
    (["Asia/Kathmandu"], None), (["Pacific/Chatham"], None), (["America/St_Johns"], None),
    (["America/New_York", "America/Chicago"], None), (["America/Chicago"], "Europe/Berlin"), ([], None),
    ([], "Asia/Tokyo"),
]  # fmt: skip


def _local_period(at: datetime, zone: str | None, period: str) -> str:
    """What the reports counted before the ledger carried zones: the instant in the contact's zone."""
    local = at.astimezone(ZoneInfo(zone or "UTC")).date()
    if period == "week":
        local -= timedelta(days=local.weekday())
    elif period == "month":
        local = local.replace(day=1)
    return local.isoformat()


async def _random_ledger(db_url: str, rng: random.Random) -> tuple[int, Counter[tuple[str, str]]]:
    """300 rows at random instants over a year (DST changes included), written as planning writes them;
    returns the workspace and the rows per (period, day|week|month) computed from the contacts in Python."""
    expected: Counter[tuple[str, str]] = Counter()
    engine = create_engine(db_url)
    async with session_factory(engine).begin() as writing:
        ws = await get_or_create_workspace(writing, "zones", now=PLANNED)
        people = ContactList(workspace_id=ws.id, name="p", created_at=PLANNED, updated_at=PLANNED)
        writing.add(people)
        await writing.flush()
        campaign = Campaign(workspace_id=ws.id, name="c", channel="sms", list_id=people.id)
        writing.add(campaign)
        for n in range(300):
            numbers, field_zone = rng.choice(_ZONE_CHOICES)
            contact = Contact(
                workspace_id=ws.id,
                list_id=people.id,
                dedupe_key=str(n),
                time_zones=numbers,
                timezone=field_zone,
            )
            writing.add(contact)
            await writing.flush()
            at = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(365 * 86_400))
            writing.add(
                Message(
                    workspace_id=ws.id, campaign_id=campaign.id, contact_id=contact.id, channel="sms",
                    address=str(n), state="sent", sent_at=at, created_at=at - timedelta(hours=1),
                    zone=planned_zone(numbers, field_zone),
                )
            )  # fmt: skip
            old_zone = field_zone or (numbers[0] if numbers else None)
            for period in ("day", "week", "month"):
                expected[(period, _local_period(at, old_zone, period))] += 1
    await engine.dispose()
    return ws.id, expected


async def test_local_periods_count_what_the_contacts_zones_say(db_url: str, session: AsyncSession) -> None:
    workspace_id, expected = await _random_ledger(db_url, random.Random(11))
    for period in ("day", "week", "month"):
        scope = reports.Scope(workspace_id, period=period, local=True)
        found = {key[0]: t.messages for key, t in (await _one(session, scope, ("period",))).items()}
        assert found == {day: n for (p, day), n in expected.items() if p == period}


async def test_planned_ledger_rows_carry_the_recipients_zone(db_url: str, session: AsyncSession) -> None:
    engine = create_engine(db_url)
    async with session_factory(engine).begin() as writing:
        ws = await get_or_create_workspace(writing, "planned", now=PLANNED)
        people = ContactList(workspace_id=ws.id, name="p", created_at=PLANNED, updated_at=PLANNED)
        writing.add(people)
        await writing.flush()
        campaign = Campaign(workspace_id=ws.id, name="c", channel="sms", list_id=people.id)
        writing.add(campaign)
        recipients = []
        for n, (numbers, field_zone) in enumerate(_ZONE_CHOICES[-4:]):
            contact = Contact(
                workspace_id=ws.id,
                list_id=people.id,
                dedupe_key=str(n),
                time_zones=numbers,
                timezone=field_zone,
            )
            writing.add(contact)
            await writing.flush()
            recipients.append(Recipient(contact.id, str(n), None, True, tuple(numbers), field_zone))
        common = {"workspace_id": ws.id, "campaign_id": campaign.id, "channel": "sms", "created_at": PLANNED}
        rows = [
            (None, r.contact_id, "A", r.phone, "planned", PLANNED, None, None, audience.ledger_zone(r))
            for r in recipients
        ]
        await audience.insert_ledger(writing, common, rows)
    await engine.dispose()
    zones = await session.execute(
        sa.select(Message.zone).where(Message.campaign_id == campaign.id).order_by(Message.contact_id)
    )
    assert list(zones.scalars()) == ["America/New_York", "Europe/Berlin", None, "Asia/Tokyo"]
