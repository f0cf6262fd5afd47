"""A small ledger with known answers for the report tests (storage and API).

Workspace ``shop``: SMS campaign "spring" (8 rows, batches pilot + main, variants A/B, provider ``alpha``)
and e-mail campaign "news" (2 rows, provider ``mailer``). Workspace ``other`` has one delivered, replied
row that must never show up in ``shop``'s reports. T = Monday 2030-01-14 23:30 UTC: 18:30 in New York,
Tuesday 08:30 in Tokyo, so UTC days and recipients' local days differ.

Spring, row by row (contact: zone · batch · variant · outcome · events):

1. c1 New York · pilot · A · delivered 10 s after T · 2 human clicks, a reply, a human open
2. c2 Tokyo · pilot · B · delivered 20 s after T · a machine click
3. c3 Berlin (field; phone zone New York) · pilot · A · sent T, failed ``30003``
4. c4 New York · main · A · sent T+1h, delivered 30 s later · a reply, an opt-out
5. c5 no zone (UTC) · main · B · sent T+1h, delivered 40 s later · a human click, conversions 12.50 + 7.50
6. c6 New York · main · A · refused at submission ``21211`` (never sent)
7. c7 Tokyo · main · B · suppressed
8. c8 Tokyo · main · A · sent T+1h, no receipt yet · a machine open

Every sent row costs 0.0075. Receipts (``delivered``, ``undelivered``) are stored as events too and must
not count as engagement. Rows never sent were planned at T−1h.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.allocation import Recipient
from dispatcher.storage.audience import ledger_zone
from dispatcher.storage.campaigns import Batch, Campaign, Event, Message
from dispatcher.storage.contacts import Contact, ContactList
from dispatcher.storage.content import Provider
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.keys import get_or_create_workspace

T = datetime(2030, 1, 14, 23, 30, tzinfo=UTC)
PLANNED = T - timedelta(hours=1)
PRICE = Decimal("0.0075")
NY, TOKYO = ["America/New_York"], ["Asia/Tokyo"]


@dataclass
class Seeded:
    workspace_id: int
    other_workspace_id: int
    spring: int
    news: int
    pilot: int
    main: int
    alpha: int
    mailer: int
    contacts: dict[str, int] = field(default_factory=dict)


def planned_zone(time_zones: list[str], field_zone: str | None) -> str | None:
    """The zone planning writes on a contact's ledger rows."""
    return ledger_zone(Recipient(0, None, None, True, tuple(time_zones), field_zone))


async def _contacts(session: AsyncSession, ws: int, list_id: int, zones: dict[str, Any]) -> dict[str, int]:
    rows = {}
    for name, (time_zones, field_zone) in zones.items():
        contact = Contact(
            workspace_id=ws,
            list_id=list_id,
            dedupe_key=name,
            phone=None,
            time_zones=time_zones,
            timezone=field_zone,
            attributes={},
            created_at=PLANNED,
        )
        session.add(contact)
        rows[name] = contact
    await session.flush()
    return {name: c.id for name, c in rows.items()}


async def _with_zones(session: AsyncSession, rows: list[Message]) -> None:
    """Each row gets the zone planning would have written for its contact."""
    for row in rows:
        contact = await session.get(Contact, row.contact_id)
        assert contact is not None
        row.zone = planned_zone(contact.time_zones, contact.timezone)


def _message(ws: int, campaign: int, contact: int, **values: Any) -> Message:
    sent_at = values.get("sent_at")
    values.setdefault("cost", PRICE if sent_at else None)
    values.setdefault("channel", "sms")
    values.setdefault("address", f"addr-{contact}")
    return Message(workspace_id=ws, campaign_id=campaign, contact_id=contact, created_at=PLANNED, **values)


def _event(message: Message, kind: str, n: int = 0, **values: Any) -> Event:
    return Event(
        workspace_id=message.workspace_id,
        kind=kind,
        dedupe_key=f"{kind}:{message.id}:{n}",
        message_id=message.id,
        campaign_id=message.campaign_id,
        contact_id=message.contact_id,
        occurred_at=values.pop("occurred_at", T + timedelta(hours=3)),
        created_at=T,
        **values,
    )


async def seed(db_url: str) -> Seeded:
    engine = create_engine(db_url)
    async with session_factory(engine).begin() as session:
        shop = await get_or_create_workspace(session, "shop", now=T)
        other = await get_or_create_workspace(session, "other", now=T)
        ids = await _seed_shop(session, shop.id)
        await _seed_other(session, other.id)
    await engine.dispose()
    ids.other_workspace_id = other.id
    return ids


async def _seed_shop(session: AsyncSession, ws: int) -> Seeded:
    people = ContactList(workspace_id=ws, name="people", created_at=T, updated_at=T)
    alpha = Provider(
        workspace_id=ws, name="alpha", channel="sms", kind="twilio_http", price_per_segment=PRICE
    )
    mailer = Provider(workspace_id=ws, name="mailer", channel="email", kind="smtp")
    session.add_all([people, alpha, mailer])
    await session.flush()
    c = await _contacts(
        session,
        ws,
        people.id,
        {
            "c1": (NY, None),
            "c2": (TOKYO, None),
            "c3": (NY, "Europe/Berlin"),
            "c4": (NY, None),
            "c5": ([], None),
            "c6": (NY, None),
            "c7": (TOKYO, None),
            "c8": (TOKYO, None),
        },
    )
    spring = Campaign(
        workspace_id=ws,
        name="spring",
        channel="sms",
        list_id=people.id,
        sender="+15005550006",
        state="running",
    )
    news = Campaign(
        workspace_id=ws, name="news", channel="email", list_id=people.id, sender="news@shop.example"
    )
    session.add_all([spring, news])
    await session.flush()
    pilot = Batch(workspace_id=ws, campaign_id=spring.id, seq=1, code=f"P{spring.id}", kind="pilot", size=3)
    main = Batch(workspace_id=ws, campaign_id=spring.id, seq=2, code=f"M{spring.id}", size=5)
    session.add_all([pilot, main])
    await session.flush()
    later = T + timedelta(hours=1)

    def sms(contact: str, batch: Batch, variant: str, state: str, **values: Any) -> Message:
        return _message(ws, spring.id, c[contact], batch_id=batch.id, variant=variant, state=state, **values)

    sent = {"provider_id": alpha.id}
    rows = [
        sms("c1", pilot, "A", "delivered", sent_at=T, delivered_at=T + timedelta(seconds=10), **sent),
        sms("c2", pilot, "B", "delivered", sent_at=T, delivered_at=T + timedelta(seconds=20), **sent),
        sms("c3", pilot, "A", "failed", sent_at=T, error_code="30003", **sent),
        sms("c4", main, "A", "delivered", sent_at=later, delivered_at=later + timedelta(seconds=30), **sent),
        sms("c5", main, "B", "delivered", sent_at=later, delivered_at=later + timedelta(seconds=40), **sent),
        sms("c6", main, "A", "failed", error_code="21211"),
        sms("c7", main, "B", "suppressed"),
        sms("c8", main, "A", "sent", sent_at=later, **sent),
        _message(
            ws,
            news.id,
            c["c1"],
            channel="email",
            state="delivered",
            provider_id=mailer.id,
            sent_at=T + timedelta(days=2),
            delivered_at=T + timedelta(days=2, seconds=5),
            cost=Decimal("0.001"),
        ),
        _message(ws, news.id, c["c2"], channel="email", state="expired"),
    ]
    await _with_zones(session, rows)
    session.add_all(rows)
    await session.flush()
    m1, m2, m3, m4, m5, _, _, m8, n1, _ = rows
    session.add_all(
        [
            *(_event(m, "delivered") for m in (m1, m2, m4, m5, n1)),
            _event(m3, "undelivered"),
            _event(m1, "click", 1),
            _event(m1, "click", 2),
            _event(m1, "reply"),
            _event(m1, "open"),
            _event(m2, "click", machine=True),
            _event(m4, "reply"),
            _event(m4, "optout"),
            _event(m5, "click"),
            _event(m5, "conversion", 1, value=Decimal("12.50")),
            _event(m5, "conversion", 2, value=Decimal("7.50")),
            _event(m8, "open", machine=True),
            _event(n1, "open"),
            _event(n1, "click"),
            _event(n1, "unsubscribe"),
        ]
    )
    return Seeded(ws, 0, spring.id, news.id, pilot.id, main.id, alpha.id, mailer.id, c)


async def _seed_other(session: AsyncSession, ws: int) -> None:
    people = ContactList(workspace_id=ws, name="theirs", created_at=T, updated_at=T)
    session.add(people)
    await session.flush()
    c = await _contacts(session, ws, people.id, {"x1": (NY, None)})
    theirs = Campaign(workspace_id=ws, name="secret of other", channel="sms", list_id=people.id)
    session.add(theirs)
    await session.flush()
    row = _message(
        ws, theirs.id, c["x1"], state="delivered", sent_at=T, delivered_at=T + timedelta(seconds=1)
    )
    await _with_zones(session, [row])
    session.add(row)
    await session.flush()
    session.add_all([_event(row, "reply"), _event(row, "click")])
