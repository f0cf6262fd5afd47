"""Figures finished per group rather than per ledger row: a day's week or month, a campaign's sender.

The ledger here straddles a week and a month boundary whose side depends on the recipient's zone, and two
campaigns share one sender, so a period or sender taken from the wrong raw value moves rows between groups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage import reports
from dispatcher.storage.campaigns import Campaign, Event, Message
from dispatcher.storage.contacts import Contact, ContactList
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.keys import get_or_create_workspace

AT = datetime(2030, 1, 1, tzinfo=UTC)
# (campaign, sent at UTC, zone, state, events): Thursday 31 January 23:30 UTC is Friday 1 February in Tokyo
# (same week, next month); Sunday 3 February 20:00 UTC is Monday 4 February in Tokyo (next week).
ROWS = [
    ("a", "2030-01-31T23:30:00", "Asia/Tokyo", "delivered", ("click", "reply")),
    ("a", "2030-01-31T23:30:00", "America/New_York", "delivered", ("open",)),
    ("b", "2030-02-03T20:00:00", "Asia/Tokyo", "failed", ("click",)),
    ("b", "2030-02-03T20:00:00", "Europe/London", "delivered", ()),
    ("c", "2030-02-03T20:00:00", "Asia/Tokyo", "delivered", ("optout",)),
]
SENDERS = {"a": "+15005550006", "b": "+15005550006", "c": "+15005550007"}


@dataclass(frozen=True)
class Ledger:
    workspace_id: int
    campaigns: dict[str, int]


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[Ledger]:
    engine = create_engine(db_url)
    async with session_factory(engine).begin() as writing:
        ws = await get_or_create_workspace(writing, "refined", now=AT)
        people = ContactList(workspace_id=ws.id, name="p", created_at=AT, updated_at=AT)
        writing.add(people)
        await writing.flush()
        campaigns = {
            name: Campaign(workspace_id=ws.id, name=name, channel="sms", list_id=people.id, sender=sender)
            for name, sender in SENDERS.items()
        }
        writing.add_all(campaigns.values())
        await writing.flush()
        for n, (name, sent, zone, state, kinds) in enumerate(ROWS):
            await _row(writing, ws.id, people.id, campaigns[name].id, n, sent, zone, state, kinds)
    yield Ledger(ws.id, {name: campaign.id for name, campaign in campaigns.items()})
    await engine.dispose()


async def _row(writing: AsyncSession, ws: int, list_id: int, campaign: int, n: int, *values: Any) -> None:
    sent, zone, state, kinds = values
    contact = Contact(workspace_id=ws, list_id=list_id, dedupe_key=str(n), time_zones=[zone])
    writing.add(contact)
    await writing.flush()
    at = datetime.fromisoformat(sent).replace(tzinfo=UTC)
    message = Message(
        workspace_id=ws, campaign_id=campaign, contact_id=contact.id, channel="sms", address=str(n),
        state=state, sent_at=at, created_at=AT, zone=zone,
        delivered_at=at if state == "delivered" else None,
    )  # fmt: skip
    writing.add(message)
    await writing.flush()
    for i, kind in enumerate(kinds):
        writing.add(
            Event(
                workspace_id=ws, kind=kind, dedupe_key=f"{kind}:{n}:{i}", message_id=message.id,
                campaign_id=campaign, contact_id=contact.id, machine=False, payload={}, occurred_at=at,
            )
        )  # fmt: skip


@pytest.fixture
async def session(db_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(db_url)
    async with session_factory(engine)() as opened:
        yield opened
    await engine.dispose()


@pytest.mark.parametrize(
    ("period", "local", "expected"),
    [
        ("week", False, {"2030-01-28": (5, 4, 2, 1)}),
        ("week", True, {"2030-01-28": (3, 3, 1, 0), "2030-02-04": (2, 1, 1, 1)}),
        ("month", False, {"2030-01-01": (2, 2, 1, 0), "2030-02-01": (3, 2, 1, 1)}),
        ("month", True, {"2030-01-01": (1, 1, 0, 0), "2030-02-01": (4, 3, 2, 1)}),
        ("day", True, {"2030-01-31": (1, 1, 0, 0), "2030-02-01": (1, 1, 1, 0), "2030-02-03": (1, 1, 0, 0),
                       "2030-02-04": (2, 1, 1, 1)}),
    ],
)  # fmt: skip
async def test_periods_are_cut_from_each_rows_own_day(
    ledger: Ledger, session: AsyncSession, period: Any, local: bool, expected: dict[str, tuple[int, ...]]
) -> None:
    scope = reports.Scope(ledger.workspace_id, period=period, local=local)
    [groups] = await reports.aggregate(session, scope, [("period",)])
    found = {
        g.key[0]: (g.tally.messages, g.tally.delivered, g.tally.responders, g.tally.failed) for g in groups
    }
    assert found == expected


async def test_campaigns_sharing_a_sender_add_up_under_it(ledger: Ledger, session: AsyncSession) -> None:
    scope = reports.Scope(ledger.workspace_id, period="week")
    by_sender, by_both, totals = await reports.aggregate(
        session, scope, [("sender",), ("sender", "campaign", "period"), ()]
    )
    figures = {
        g.key: (g.tally.messages, g.tally.responders, g.tally.repliers, g.tally.opted_out) for g in by_sender
    }
    assert figures == {("+15005550006",): (4, 2, 1, 0), ("+15005550007",): (1, 0, 0, 1)}
    assert [g.key for g in by_both] == [
        ("+15005550006", ledger.campaigns["a"], "2030-01-28"),
        ("+15005550006", ledger.campaigns["b"], "2030-01-28"),
        ("+15005550007", ledger.campaigns["c"], "2030-01-28"),
    ]
    # the failed row had been sent: it counts as sent, and its click as a response
    assert (totals[0].tally.sent, totals[0].tally.clickers, totals[0].tally.openers) == (5, 2, 1)
