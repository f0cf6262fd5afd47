"""An e-mail campaign with a real arq worker, both databases and the SMTP sink over a socket: each recipient
gets one valid MIME message with both one-click headers and a DKIM signature that verifies; a hard bounce
is recorded once and suppresses the address; a relay that dies mid-campaign hands over to the next."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dkim  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from dispatcher.channels.fake_smtp import FakeSmtp, FakeSmtpConfig, start_fake_smtp
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Batch, Campaign, Message
from dispatcher.storage.contacts import Contact, ContactList, Suppression
from dispatcher.storage.content import Provider, Template, TemplateVersion
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.keys import get_or_create_workspace
from tests.channels.test_smtp_dkim import DOMAIN, dns_for
from tests.pipeline.campaign_setup import ledger_states, messages_by, run_rounds

SUBJECT = "{{ first_name }}, 30 % off — this week only"
TEXT = "Hi {{ first_name }},\nour winter sale is on.\nUnsubscribe: {{ unsubscribe_url }}\n"
HTML = "<p>Hi {{ first_name }},</p><p>Our <b>winter sale</b> is on.</p>"


def address(n: int) -> str:
    return f"bounce-{n}@example.org" if n % 50 == 7 else f"user{n}@example.org"


def relay(sink: FakeSmtp, **config: Any) -> dict[str, Any]:
    return {"host": sink.host, "port": sink.port, "tls": "none", "connections": 4, "timeout": 5, **config}


async def seed_email_campaign(settings: Settings, relays: list[dict[str, Any]], recipients: int) -> int:
    """A running e-mail campaign; the first relay is its provider, the others fail-over candidates."""
    now = datetime.now(UTC)
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        ws = await get_or_create_workspace(session, "shop", now=now)
        target = ContactList(workspace_id=ws.id, name="readers", created_at=now, updated_at=now)
        providers = [
            Provider(
                workspace_id=ws.id, name=f"relay-{i}", channel="email", kind="smtp",
                price_per_segment=0.0001, priority=100 + i, config=config,
            )
            for i, config in enumerate(relays)
        ]  # fmt: skip
        template = Template(workspace_id=ws.id, name="winter", channel="email")
        session.add_all([target, template, *providers])
        await session.flush()
        version = TemplateVersion(
            workspace_id=ws.id, template_id=template.id, version=1, subject=SUBJECT, text_body=TEXT,
            html_body=HTML,
        )  # fmt: skip
        session.add(version)
        await session.flush()
        campaign = Campaign(
            workspace_id=ws.id, name="winter", state="running", channel="email", list_id=target.id,
            provider_id=providers[0].id, sender="Shop <news@shop.example>",
            variants={"A": {"template_id": template.id, "template_version_id": version.id, "weight": 100}},
            schedule={"windows": "00:00-24:00", "allowed": "00:00-24:00",
                      "end_at": (now + timedelta(days=3)).isoformat()},
            limits={"per_local_day": 5, "per_rolling_days": 10, "rolling_days": 7}, started_at=now,
        )  # fmt: skip
        session.add(campaign)
        await session.flush()
        batch = Batch(workspace_id=ws.id, campaign_id=campaign.id, seq=1, code="W1", state="released")
        session.add(batch)
        await session.flush()
        await session.execute(
            sa.insert(Contact),
            [
                {"workspace_id": ws.id, "list_id": target.id, "dedupe_key": address(n), "email": address(n),
                 "first_name": f"Reader{n}", "time_zones": ["Europe/Paris"], "attributes": {},
                 "created_at": now}
                for n in range(recipients)
            ],
        )  # fmt: skip
        rows = (await session.execute(sa.select(Contact.id, Contact.email))).all()
        await session.execute(
            sa.insert(Message),
            [
                {"workspace_id": ws.id, "campaign_id": campaign.id, "batch_id": batch.id, "contact_id": cid,
                 "channel": "email", "address": mail, "state": "planned",
                 "not_before": now - timedelta(seconds=1), "created_at": now, "updated_at": now}
                for cid, mail in rows
            ],
        )  # fmt: skip
        campaign_id = campaign.id
    await engine.dispose()
    return campaign_id


@pytest.fixture
async def sink() -> AsyncIterator[FakeSmtp]:
    async with start_fake_smtp(FakeSmtpConfig(seed=3)) as server:
        yield server


async def test_each_reader_gets_one_signed_message_and_bounces_suppress(
    settings: Settings, sink: FakeSmtp, rsa_key: tuple[str, bytes]
) -> None:
    pem, record = rsa_key
    dkim_config = {"dkim_selector": "mail2026", "dkim_domain": DOMAIN, "dkim_private_key": pem}
    campaign_id = await seed_email_campaign(settings, [relay(sink, **dkim_config)], 120)
    await run_rounds(settings, campaign_id, timeout=60)

    bounced = {address(n) for n in range(120) if address(n).startswith("bounce")}
    assert await ledger_states(settings, campaign_id) == {"sent": 120 - len(bounced), "failed": len(bounced)}
    received = sink.store.messages
    assert sorted(r for m in received for r in m.rcpt_tos) == sorted(
        address(n) for n in range(120) if address(n) not in bounced
    )
    for stored in received:
        parsed = email.message_from_bytes(stored.data, policy=email.policy.default)
        assert parsed.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["List-Unsubscribe"].startswith("<http")
        assert parsed["Subject"].endswith("30 % off — this week only")
        assert parsed["Message-ID"]
        assert dkim.verify(stored.data, dnsfunc=dns_for(record))
    failed = {(a, e) for a, state, _, e in await messages_by(settings, campaign_id) if state == "failed"}
    assert {a for a, _ in failed} == bounced
    assert await _suppressed(settings) == bounced


async def test_a_dead_relay_hands_its_readers_to_the_next_exactly_once(
    settings: Settings, sink: FakeSmtp
) -> None:
    async with start_fake_smtp(FakeSmtpConfig(seed=4)) as doomed:
        dead = relay(doomed)
    # the primary's listener is gone before the campaign starts: every connection is refused
    campaign_id = await seed_email_campaign(settings, [dead, relay(sink)], 200)
    await run_rounds(settings, campaign_id, timeout=90)
    bounced = sum(1 for n in range(200) if address(n).startswith("bounce"))
    assert await ledger_states(settings, campaign_id) == {"sent": 200 - bounced, "failed": bounced}
    stats = sink.store.stats()
    assert stats["messages"] == stats["unique_recipients"] == 200 - bounced
    assert stats["recipients_with_duplicates"] == 0


async def _suppressed(settings: Settings) -> set[str]:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        found = set((await conn.scalars(sa.select(Suppression.address))).all())
    await engine.dispose()
    return found
