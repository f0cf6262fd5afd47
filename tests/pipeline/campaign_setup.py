"""Builds a running SMS campaign straight in the database, for tests of the dispatch half of the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Batch, Campaign, Message
from dispatcher.storage.contacts import Contact, ContactList
from dispatcher.storage.content import Provider, Template, TemplateVersion
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.keys import get_or_create_workspace

BODY = "Hi {{ first_name | default('there') }}, 20% off today only. Reply STOP to opt out"


def phone(n: int) -> str:
    return f"+1415{2000000 + n:07d}"


async def seed_campaign(
    settings: Settings,
    stub_url: str,
    recipients: int,
    *,
    limits: dict[str, Any] | None = None,
    windows: str = "00:00-24:00",
    allowed: str = "00:00-24:00",
    zones: tuple[str, ...] = ("America/Los_Angeles",),
    stub: FakeSmsConfig | None = None,
) -> int:
    stub = stub or FakeSmsConfig()
    now = datetime.now(UTC)
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        ws = await get_or_create_workspace(session, "shop", now=now)
        target = ContactList(workspace_id=ws.id, name="customers", created_at=now, updated_at=now)
        provider = Provider(
            workspace_id=ws.id,
            name="stub",
            channel="sms",
            kind="twilio_http",
            price_per_segment=0.0075,
            config={
                "base_url": stub_url,
                "account_sid": stub.account_sid,
                "auth_token": stub.auth_token,
                "from": ["+15005550006"],
                "idempotency": True,
                "timeout_s": 5,
            },
        )
        template = Template(workspace_id=ws.id, name="promo", channel="sms")
        session.add_all([target, provider, template])
        await session.flush()
        version = TemplateVersion(workspace_id=ws.id, template_id=template.id, version=1, body=BODY)
        session.add(version)
        await session.flush()
        campaign = Campaign(
            workspace_id=ws.id,
            name="spring",
            state="running",
            channel="sms",
            list_id=target.id,
            provider_id=provider.id,
            variants={"A": {"template_id": template.id, "template_version_id": version.id, "weight": 100}},
            schedule={
                "windows": windows,
                "allowed": allowed,
                "end_at": (now + timedelta(days=3)).isoformat(),
            },
            limits={"per_local_day": 5, "per_rolling_days": 10, "rolling_days": 7, **(limits or {})},
            started_at=now,
        )
        session.add(campaign)
        await session.flush()
        batch = Batch(
            workspace_id=ws.id, campaign_id=campaign.id, seq=1, code=f"B{campaign.id}", state="released"
        )
        session.add(batch)
        await session.flush()
        contacts = [
            {
                "workspace_id": ws.id,
                "list_id": target.id,
                "dedupe_key": phone(n),
                "phone": phone(n),
                "phone_type": "mobile",
                "sms_capable": True,
                "time_zones": list(zones),
                "first_name": f"P{n}",
                "attributes": {},
                "created_at": now,
            }
            for n in range(recipients)
        ]
        await session.execute(sa.insert(Contact), contacts)
        ids = (await session.scalars(sa.select(Contact.id).where(Contact.list_id == target.id))).all()
        numbers = dict(
            (
                await session.execute(
                    sa.select(Contact.id, Contact.phone).where(Contact.list_id == target.id)
                )
            ).all()
        )
        await session.execute(
            sa.insert(Message),
            [
                {
                    "workspace_id": ws.id,
                    "campaign_id": campaign.id,
                    "batch_id": batch.id,
                    "contact_id": cid,
                    "channel": "sms",
                    "address": numbers[cid],
                    "state": "planned",
                    "not_before": now - timedelta(seconds=1),
                    "created_at": now,
                    "updated_at": now,
                }
                for cid in ids
            ],
        )
        campaign_id = campaign.id
    await engine.dispose()
    return campaign_id


async def ledger_states(settings: Settings, campaign_id: int) -> dict[str, int]:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(Message.state, sa.func.count())
            .where(Message.campaign_id == campaign_id)
            .group_by(Message.state)
        )
        found = {str(state): int(count) for state, count in rows}
    await engine.dispose()
    return found


async def campaign_state(settings: Settings, campaign_id: int) -> str:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        state = await conn.scalar(sa.select(Campaign.state).where(Campaign.id == campaign_id))
    await engine.dispose()
    return str(state)


async def add_provider(
    settings: Settings, campaign_id: int, url: str, *, priority: int = 200, **config: Any
) -> int:
    """Another enabled Twilio-style provider in the campaign's workspace (a failover candidate)."""
    stub = FakeSmsConfig()
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        provider = Provider(
            workspace_id=campaign.workspace_id,
            name=f"stub-{priority}-{url.rsplit(':', 1)[-1]}",
            channel="sms",
            kind="twilio_http",
            price_per_segment=0.0075,
            priority=priority,
            config={
                "base_url": url,
                "account_sid": stub.account_sid,
                "auth_token": stub.auth_token,
                "from": ["+15005550007"],
                "idempotency": True,
                "timeout_s": 5,
                **config,
            },
        )
        session.add(provider)
        await session.flush()
        provider_id = provider.id
    await engine.dispose()
    return provider_id


async def update_campaign(settings: Settings, campaign_id: int, **values: Any) -> None:
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        await session.execute(sa.update(Campaign).where(Campaign.id == campaign_id).values(**values))
    await engine.dispose()


async def campaign_row(settings: Settings, campaign_id: int) -> Campaign:
    engine = create_engine(settings.database_url)
    async with session_factory(engine)() as session:
        found = await session.get(Campaign, campaign_id)
    await engine.dispose()
    assert found is not None
    return found


async def messages_by(settings: Settings, campaign_id: int) -> list[tuple[str, str, int | None, str | None]]:
    """``(address, state, provider_id, error_code)`` of every ledger row."""
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(Message.address, Message.state, Message.provider_id, Message.error_code).where(
                Message.campaign_id == campaign_id
            )
        )
        found = [(str(a), str(s), p, e) for a, s, p, e in rows]
    await engine.dispose()
    return found


async def run_rounds(
    settings: Settings, campaign_id: int, *, timeout: float = 60.0, pause: float = 0.3
) -> None:
    """Tick and drain with a real arq worker until nothing of the campaign is left to send (retries wait
    for their back-off, so this loops), or until ``timeout``."""
    import asyncio
    import time

    from dispatcher.pipeline.queue import connect_queue
    from tests.helpers import drain

    pool = await connect_queue(settings.redis_url or "")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await pool.enqueue_job("dispatch_tick", _queue_name=settings.queue_name)
            await drain(settings)
            states = await ledger_states(settings, campaign_id)
            if not set(states) & {"planned", "queued", "sending"}:
                return
            if await campaign_state(settings, campaign_id) != "running":
                return
            await asyncio.sleep(pause)
    finally:
        await pool.aclose()


async def clone_campaign(settings: Settings, campaign_id: int) -> int:
    """A second running campaign to the same contacts, same provider and template (fresh ledger rows)."""
    now = datetime.now(UTC)
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        source = await session.get(Campaign, campaign_id)
        assert source is not None
        clone = Campaign(
            workspace_id=source.workspace_id,
            name=f"{source.name} again",
            state="running",
            channel=source.channel,
            list_id=source.list_id,
            provider_id=source.provider_id,
            variants=source.variants,
            schedule=source.schedule,
            limits=source.limits,
            started_at=now,
        )
        session.add(clone)
        await session.flush()
        batch = Batch(
            workspace_id=source.workspace_id,
            campaign_id=clone.id,
            seq=1,
            code=f"B{clone.id}",
            state="released",
        )
        session.add(batch)
        await session.flush()
        rows = (
            await session.execute(
                sa.select(Message.contact_id, Message.address).where(Message.campaign_id == campaign_id)
            )
        ).all()
        await session.execute(
            sa.insert(Message),
            [
                {
                    "workspace_id": source.workspace_id,
                    "campaign_id": clone.id,
                    "batch_id": batch.id,
                    "contact_id": cid,
                    "channel": source.channel,
                    "address": address,
                    "state": "planned",
                    "not_before": now - timedelta(seconds=1),
                    "created_at": now,
                    "updated_at": now,
                }
                for cid, address in rows
            ],
        )
        clone_id = clone.id
    await engine.dispose()
    return clone_id
