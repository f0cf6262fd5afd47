"""Builds a running SMS campaign straight in the database, for tests of the dispatch half of the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.core.cleaning_fields import PhoneResult, clean_phone
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


async def unsent_details(settings: Settings, campaign_id: int) -> list[tuple[Any, ...]]:
    """What an assertion on the ledger prints when it fails: each row not ``sent``, with its why."""
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                Message.id,
                Message.state,
                Message.attempts,
                Message.provider_id,
                Message.error_code,
                Message.error_detail,
                Message.possible_duplicate,
                Message.ambiguous,
            )
            .where(Message.campaign_id == campaign_id, Message.state != "sent")
            .order_by(Message.id)
            .limit(20)
        )
        found = [tuple(row) for row in rows]
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


# --- campaigns planned by the engine itself, at instants a test chooses ---------------------------------


@dataclass(frozen=True)
class Person:
    """A contact as an import stores it: E.164 number, the zones phonenumbers gives it, own zone field."""

    phone: str
    zones: tuple[str, ...]
    timezone: str | None = None


def person(raw: str, timezone: str | None = None) -> Person:
    cleaned = clean_phone(raw, None)
    assert isinstance(cleaned, PhoneResult), raw
    assert cleaned.sms_capable, raw
    return Person(cleaned.e164, cleaned.time_zones, timezone)


async def seed_scheduled(
    settings: Settings,
    stub_url: str,
    people: Sequence[Person],
    *,
    slug: str,
    end_at: datetime,
    windows: str = "10:30-11:30,15:00-17:00",
    allowed: str = "08:00-21:00",
    bodies: Mapping[str, tuple[str, int]] | None = None,
    pilot: tuple[int, int | None] | None = None,
    list_zone: str | None = None,
) -> int:
    """A ``scheduled`` campaign in its own workspace (so caps never link tests), not planned yet: queue
    ``plan_campaign`` for it. ``bodies``: variant → (SMS template, weight); ``pilot``: (percent, delay)."""
    stub, created = FakeSmsConfig(), datetime.now(UTC)
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        ws = await get_or_create_workspace(session, slug, now=created)
        target = ContactList(workspace_id=ws.id, name=slug, default_timezone=list_zone)
        provider = Provider(
            workspace_id=ws.id, name="stub", channel="sms", kind="twilio_http", price_per_segment=0.0075,
            config={"base_url": stub_url, "account_sid": stub.account_sid, "auth_token": stub.auth_token,
                    "from": ["+15005550006"], "idempotency": True, "timeout_s": 5},
        )  # fmt: skip
        session.add_all([target, provider])
        await session.flush()
        variants: dict[str, dict[str, Any]] = {}
        for name, (body, weight) in (bodies or {"A": (BODY, 1)}).items():
            template = Template(workspace_id=ws.id, name=f"promo {name}", channel="sms")
            session.add(template)
            await session.flush()
            version = TemplateVersion(workspace_id=ws.id, template_id=template.id, version=1, body=body)
            session.add(version)
            await session.flush()
            variants[name] = {"template_id": template.id, "template_version_id": version.id, "weight": weight}
        campaign = Campaign(
            workspace_id=ws.id, name=slug, state="scheduled", channel="sms", list_id=target.id,
            provider_id=provider.id, variants=variants,
            schedule={"windows": windows, "allowed": allowed, "end_at": end_at.isoformat()},
            limits={"per_local_day": 5, "per_rolling_days": 10, "rolling_days": 7},
            pilot_percent=pilot[0] if pilot else None, pilot_delay_minutes=pilot[1] if pilot else None,
        )  # fmt: skip
        session.add(campaign)
        await session.flush()
        contacts: list[dict[str, Any]] = [
            {"workspace_id": ws.id, "list_id": target.id, "dedupe_key": p.phone, "phone": p.phone,
             "phone_type": "mobile", "sms_capable": True, "time_zones": list(p.zones),
             "timezone": p.timezone, "first_name": f"P{n}", "attributes": {}, "created_at": created}
            for n, p in enumerate(people)
        ]  # fmt: skip
        await session.execute(sa.insert(Contact), contacts)
        campaign_id = campaign.id
    await engine.dispose()
    return campaign_id


async def run_at(settings: Settings, at: datetime, job: str, *args: Any) -> None:
    """Queue one job and drain with a real arq worker whose clock stands still at ``at`` (the jobs it
    queues, such as a tick's send chunks, run at ``at`` too)."""
    from dispatcher.pipeline.queue import connect_queue
    from dispatcher.pipeline.worker import build_worker

    pool = await connect_queue(settings.redis_url or "")
    try:
        await pool.enqueue_job(job, *args, _queue_name=settings.queue_name)
    finally:
        await pool.aclose()
    worker = build_worker(settings, settings.redis_url or "", burst=True, clock=lambda: at)
    worker.poll_delay_s = 0.05  # a burst worker sleeps this long between looks at the queue (arq: 0.5 s)
    try:
        await worker.main()
    finally:
        await worker.close()


async def ledger_rows(settings: Settings, campaign_id: int) -> list[Message]:
    engine = create_engine(settings.database_url)
    async with session_factory(engine)() as session:
        rows = list(await session.scalars(sa.select(Message).where(Message.campaign_id == campaign_id)))
    await engine.dispose()
    return rows


# --- e-mail and SMPP campaigns (bench/dispatch.py --channel email|smpp) -----------------------------------

EMAIL_SUBJECT = "{{ first_name | default('Hello') }}, winter sale: 30% off"
EMAIL_TEXT = "Hello {{ first_name | default('there') }},\n\nOur winter sale starts today: 30% off.\n"
EMAIL_HTML = "<html><body><p>Hi {{ first_name | default('there') }},</p><p><b>30% off</b>.</p></body></html>"


def email_address(n: int) -> str:
    return f"c{n}@customers.example"


def _contact(ws_id: int, list_id: int, channel: str, n: int, now: datetime) -> dict[str, Any]:
    address = email_address(n) if channel == "email" else phone(n)
    row: dict[str, Any] = {"workspace_id": ws_id, "list_id": list_id, "dedupe_key": address}
    row |= {"email": address} if channel == "email" else {"phone": address, "phone_type": "mobile"}
    row |= {"sms_capable": channel == "sms", "time_zones": ["America/Los_Angeles"], "first_name": f"P{n}"}
    return row | {"attributes": {}, "created_at": now}


async def seed_channel_campaign(
    settings: Settings,
    recipients: int,
    *,
    kind: str,
    config: dict[str, Any],
    sender: str | None = None,
    limits: dict[str, Any] | None = None,
) -> int:
    """A running campaign of ``recipients`` through one provider of ``kind`` (``smtp``: e-mails to
    ``email_address(n)``; any other kind: SMS to ``phone(n)``), its ledger planned and due now."""
    channel = "email" if kind == "smtp" else "sms"
    now = datetime.now(UTC)
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        ws = await get_or_create_workspace(session, f"shop-{kind}", now=now)
        target = ContactList(workspace_id=ws.id, name=f"{kind} customers", created_at=now, updated_at=now)
        provider = Provider(
            workspace_id=ws.id, name=kind, channel=channel, kind=kind, price_per_segment=0.001, config=config
        )
        template = Template(workspace_id=ws.id, name=f"{kind} promo", channel=channel)
        session.add_all([target, provider, template])
        await session.flush()
        parts = {"subject": EMAIL_SUBJECT, "text_body": EMAIL_TEXT, "html_body": EMAIL_HTML}
        version = TemplateVersion(
            workspace_id=ws.id, template_id=template.id, version=1,
            **(parts if channel == "email" else {"body": BODY}),
        )  # fmt: skip
        session.add(version)
        await session.flush()
        campaign = Campaign(
            workspace_id=ws.id, name=f"{kind} winter", state="running", channel=channel, list_id=target.id,
            provider_id=provider.id, sender=sender, started_at=now,
            variants={"A": {"template_id": template.id, "template_version_id": version.id, "weight": 100}},
            schedule={"windows": "00:00-24:00", "allowed": "00:00-24:00",
                      "end_at": (now + timedelta(days=3)).isoformat()},
            limits={"per_local_day": 5, "per_rolling_days": 10, "rolling_days": 7, **(limits or {})},
        )  # fmt: skip
        session.add(campaign)
        await session.flush()
        batch = Batch(workspace_id=ws.id, campaign_id=campaign.id, seq=1, code="B1", state="released")
        session.add(batch)
        await session.flush()
        rows = [_contact(ws.id, target.id, channel, n, now) for n in range(recipients)]
        await session.execute(sa.insert(Contact), rows)
        field = Contact.email if channel == "email" else Contact.phone
        query = sa.select(Contact.id, field).where(Contact.list_id == target.id)
        await session.execute(
            sa.insert(Message),
            [
                {"workspace_id": ws.id, "campaign_id": campaign.id, "batch_id": batch.id, "contact_id": cid,
                 "channel": channel, "address": address, "state": "planned",
                 "not_before": now - timedelta(seconds=1), "created_at": now, "updated_at": now}
                for cid, address in (await session.execute(query)).all()
            ],
        )  # fmt: skip
        campaign_id = campaign.id
    await engine.dispose()
    return campaign_id
