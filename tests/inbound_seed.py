"""Rows the inbound tests start from: a workspace with providers and a campaign whose messages went out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.accounts import Workspace
from dispatcher.storage.campaigns import Batch, Campaign, Event, Message
from dispatcher.storage.contacts import ConsentRecord, Contact, ContactList, Suppression
from dispatcher.storage.content import Provider

SENT_AT = datetime.now(UTC) - timedelta(hours=1)
TWILIO_TOKEN = "twilio-auth-token-of-acme"
WEBHOOK_SECRET = "webhook-secret-of-acme"


def phone(n: int) -> str:
    return f"+1415555{n:04d}"


def email(n: int) -> str:
    return f"person{n}@example.com"


@dataclass
class Seeded:
    workspace_id: int
    campaign_id: int
    batch_id: int
    provider_id: int
    message_ids: list[int] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    contact_ids: list[int] = field(default_factory=list)

    def sid(self, index: int) -> str:
        return f"SM{self.message_ids[index]:032d}"


async def workspace(session: AsyncSession, slug: str = "acme") -> int:
    found = await session.scalar(sa.select(Workspace.id).where(Workspace.slug == slug))
    if found is not None:
        return int(found)
    row = Workspace(slug=slug, name=slug)
    session.add(row)
    await session.flush()
    return row.id


async def seed(
    session: AsyncSession,
    *,
    channel: str = "sms",
    count: int = 3,
    slug: str = "acme",
    state: str = "sent",
    provider_config: dict[str, Any] | None = None,
) -> Seeded:
    """``count`` messages in ``state`` (sent: with provider message ids ``SM…`` and sent_at an hour ago)."""
    workspace_id = await workspace(session, slug)
    config = provider_config or (
        {"auth_token": TWILIO_TOKEN, "account_sid": "AC" + "0" * 32}
        if channel == "sms"
        else {"webhook_secret": WEBHOOK_SECRET}
    )
    provider = Provider(
        workspace_id=workspace_id,
        name=f"{channel} provider {datetime.now(UTC).timestamp()}",
        channel=channel,
        kind="twilio_http" if channel == "sms" else "smtp",
        config=config,
    )
    contact_list = ContactList(workspace_id=workspace_id, name="list")
    session.add_all([provider, contact_list])
    await session.flush()
    campaign = Campaign(
        workspace_id=workspace_id,
        name="campaign",
        channel=channel,
        list_id=contact_list.id,
        provider_id=provider.id,
        state="running",
    )
    session.add(campaign)
    await session.flush()
    batch = Batch(
        workspace_id=workspace_id, campaign_id=campaign.id, seq=1, code=f"B{campaign.id}", size=count
    )
    session.add(batch)
    await session.flush()
    seeded = Seeded(workspace_id, campaign.id, batch.id, provider.id)
    for n in range(count):
        address = phone(n) if channel == "sms" else email(n)
        contact = Contact(
            workspace_id=workspace_id,
            list_id=contact_list.id,
            dedupe_key=address,
            phone=address if channel == "sms" else None,
            email=address if channel == "email" else None,
        )
        session.add(contact)
        await session.flush()
        message = Message(
            workspace_id=workspace_id,
            campaign_id=campaign.id,
            batch_id=batch.id,
            contact_id=contact.id,
            channel=channel,
            address=address,
            state=state,
            provider_id=provider.id,
            sent_at=SENT_AT if state in {"sent", "sending"} else None,
        )
        session.add(message)
        await session.flush()
        if state == "sent":
            message.provider_message_id = f"SM{message.id:032d}"
            message.idempotency_key = f"dsp-{campaign.id}-{message.id}"
        seeded.message_ids.append(message.id)
        seeded.addresses.append(address)
        seeded.contact_ids.append(contact.id)
    await session.flush()
    return seeded


async def events(session: AsyncSession, workspace_id: int, kind: str | None = None) -> list[Event]:
    query = sa.select(Event).where(Event.workspace_id == workspace_id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    return list(await session.scalars(query.order_by(Event.id)))


async def kinds(session: AsyncSession, workspace_id: int) -> dict[str, int]:
    rows = await session.execute(
        sa.select(Event.kind, sa.func.count()).where(Event.workspace_id == workspace_id).group_by(Event.kind)
    )
    return {str(kind): int(count) for kind, count in rows}


async def states(session: AsyncSession, campaign_id: int) -> dict[int, str]:
    rows = await session.execute(
        sa.select(Message.id, Message.state).where(Message.campaign_id == campaign_id)
    )
    return {int(mid): str(state) for mid, state in rows}


async def message(session: AsyncSession, message_id: int) -> Message:
    found = await session.scalar(
        sa.select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
    )
    assert found is not None
    return found


async def suppressions(session: AsyncSession, workspace_id: int) -> list[tuple[str, str, str]]:
    rows = await session.execute(
        sa.select(Suppression.channel, Suppression.address, Suppression.reason)
        .where(Suppression.workspace_id == workspace_id)
        .order_by(Suppression.id)
    )
    return [(str(c), str(a), str(r)) for c, a, r in rows]


async def consents(session: AsyncSession, workspace_id: int) -> list[tuple[str, bool]]:
    rows = await session.execute(
        sa.select(ConsentRecord.address, ConsentRecord.granted)
        .where(ConsentRecord.workspace_id == workspace_id)
        .order_by(ConsentRecord.id)
    )
    return [(str(a), bool(g)) for a, g in rows]
