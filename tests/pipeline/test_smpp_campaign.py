"""An SMS campaign over SMPP with a real arq worker, both databases, and smpp34's SMSC over a socket:
every recipient once, receipts and replies (STOP) written to the ledger through the same bind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
import sqlalchemy as sa

from dispatcher.channels.base import OutboundSms
from dispatcher.channels.smpp import SmppChannel
from dispatcher.core.smpp_receipts import Receipt
from dispatcher.pipeline.channels import channel_factory
from dispatcher.pipeline.context import WorkerResources
from dispatcher.pipeline.smpp_events import SmppEvents
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Campaign, Message
from dispatcher.storage.contacts import Suppression
from dispatcher.storage.content import Provider
from dispatcher.storage.engine import create_engine, session_factory
from tests.channels.smsc import Smsc
from tests.pipeline.campaign_setup import ledger_states, phone, run_rounds, seed_campaign

SENDER = "ACME"


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    server = await Smsc().start()
    yield server
    await server.stop()


async def use_smpp(settings: Settings, campaign_id: int, server: Smsc) -> int:
    """An SMPP provider in the campaign's workspace, made its primary; the Twilio one is disabled."""
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        await session.execute(sa.update(Provider).values(enabled=False))
        provider = Provider(
            workspace_id=campaign.workspace_id,
            name="smsc",
            channel="sms",
            kind="smpp",
            price_per_segment=0.004,
            config={
                "host": server.host,
                "port": server.port,
                "system_id": "esme",
                "password": "secret",
                "from": [SENDER],
                "reconnect_min_delay": 0.05,
                "reconnect_max_delay": 0.2,
            },
        )
        session.add(provider)
        await session.flush()
        campaign.provider_id = provider.id
        provider_id = provider.id
    await engine.dispose()
    return provider_id


async def test_every_recipient_gets_one_message_over_smpp(settings: Settings, smsc: Smsc) -> None:
    campaign_id = await seed_campaign(settings, "http://127.0.0.1:9", 300)
    await use_smpp(settings, campaign_id, smsc)
    await run_rounds(settings, campaign_id, timeout=60)
    assert await ledger_states(settings, campaign_id) == {"sent": 300}
    assert sorted(r.destination for r in smsc.received) == sorted(phone(n)[1:] for n in range(300))
    assert {r.source for r in smsc.received} == {SENDER}
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        ids = set((await conn.scalars(sa.select(Message.provider_message_id))).all())
    await engine.dispose()
    assert ids == {r.message_id for r in smsc.received}  # each receipt will find its message


async def test_receipts_and_stop_replies_reach_the_ledger(settings: Settings, smsc: Smsc) -> None:
    campaign_id = await seed_campaign(settings, "http://127.0.0.1:9", 20)
    provider_id = await use_smpp(settings, campaign_id, smsc)
    await run_rounds(settings, campaign_id, timeout=60)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    async with sessions() as session:
        provider = await session.get(Provider, provider_id)
        assert provider is not None
    events = SmppEvents(provider, sessions)
    received = {r.destination: r.message_id for r in smsc.received}
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    for _ in range(3):  # an SMSC that repeats receipts: each counts once
        for n in range(10):
            message_id = received[phone(n)[1:]]
            assert message_id is not None
            await events.on_receipt(Receipt(message_id, "delivered", done_at=at))
    await events.on_receipt(Receipt(received[phone(10)[1:]] or "", "undelivered", error_code="001"))
    await events.on_receipt(Receipt("no-such-id", "delivered"))
    assert await ledger_states(settings, campaign_id) == {"delivered": 10, "failed": 1, "sent": 9}

    # a STOP from a recipient arrives over the bind the worker sends on, built as the worker builds it
    async with aiohttp.ClientSession() as http:
        res = WorkerResources(settings, engine, sessions, http, worker_id="t", host="h", pid=0)
        channel = channel_factory(res)(provider)
        assert isinstance(channel, SmppChannel)
        try:
            warm_up = OutboundSms(message_id=0, to=phone(0), sender=SENDER, body="hi", idempotency_key="w")
            await channel.send_batch([warm_up])  # opens the bind
            before = len(smsc.received)
            mo = {"source_addr": phone(3)[1:], "source_addr_ton": 1, "destination_addr": SENDER}
            for _ in range(2):  # delivered twice by the SMSC: one suppression, one confirmation
                assert await smsc.deliver(b" stop ", **mo) == 0
            await smsc.wait_for(before + 1)
            await asyncio.sleep(0.3)  # room for a wrong second confirmation to show up
        finally:
            await channel.close()
    await engine.dispose()
    confirmations = [r for r in smsc.received[before:] if r.destination == phone(3)[1:]]
    assert len(confirmations) == 1
    assert confirmations[0].short_message.decode().startswith("You are unsubscribed")
    assert await _suppressed(settings) == [phone(3)]


async def _suppressed(settings: Settings) -> list[str]:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        found = list((await conn.scalars(sa.select(Suppression.address))).all())
    await engine.dispose()
    return found
