"""A message that cannot be built for one recipient fails alone, as ``render_error``; the chunk goes on.

Real arq worker, both databases, real Redis, the SMS stub and the SMTP sink over sockets. The templates are
made strict after seeding (no ``default``), and some contacts are given what breaks them: no first name
(jinja's undefined variable) or a first name carrying a header injection into the e-mail subject.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.channels.fake_smtp import FakeSmtp, FakeSmtpConfig, start_fake_smtp
from dispatcher.core.capping import CapPolicy, cap_keys
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Campaign, Message
from dispatcher.storage.contacts import Contact
from dispatcher.storage.content import TemplateVersion
from dispatcher.storage.engine import create_engine, session_factory
from tests.pipeline.campaign_setup import (
    email_address,
    messages_by,
    phone,
    run_rounds,
    seed_channel_campaign,
)

N = 60


def broken(n: int) -> bool:
    return n % 7 == 3


@pytest.fixture
async def sink() -> AsyncIterator[FakeSmtp]:
    async with start_fake_smtp(FakeSmtpConfig(seed=5, bounce_prefix=None)) as server:
        yield server


async def _break(
    settings: Settings, campaign_id: int, parts: dict[str, str | None], first_name: str | None
) -> None:
    """Strict template parts, and ``first_name`` set to ``first_name`` for the broken recipients."""
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        version_id = int(campaign.variants["A"]["template_version_id"])
        await session.execute(
            sa.update(TemplateVersion).where(TemplateVersion.id == version_id).values(**parts)
        )
        field = Contact.email if campaign.channel == "email" else Contact.phone
        address = email_address if campaign.channel == "email" else phone
        doomed = [address(n) for n in range(N) if broken(n)]
        await session.execute(sa.update(Contact).where(field.in_(doomed)).values(first_name=first_name))
    await engine.dispose()


async def _failures(settings: Settings, campaign_id: int) -> dict[str, str | None]:
    rows = await messages_by(settings, campaign_id)
    assert {state for _, state, _, _ in rows} <= {"sent", "failed"}, rows
    return {address: error for address, state, _, error in rows if state == "failed"}


async def _stub_recipients(url: str) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_stub/messages?limit=1000") as response:
        body = await response.json()
    return [m["to"] for m in (body["messages"] if isinstance(body, dict) else body)]


async def test_an_undefined_variable_fails_that_sms_alone(settings: Settings, sms_stub: str) -> None:
    config: dict[str, Any] = {"base_url": sms_stub, "account_sid": FakeSmsConfig().account_sid}
    config |= {"auth_token": FakeSmsConfig().auth_token, "from": ["+15005550006"], "idempotency": True}
    campaign_id = await seed_channel_campaign(settings, N, kind="twilio_http", config=config)
    await _break(settings, campaign_id, {"body": "Hi {{ first_name }}, 20% off today"}, None)

    await run_rounds(settings, campaign_id, timeout=60)

    doomed = {phone(n) for n in range(N) if broken(n)}
    assert await _failures(settings, campaign_id) == dict.fromkeys(doomed, "render_error")
    assert sorted(await _stub_recipients(sms_stub)) == sorted(phone(n) for n in range(N) if not broken(n))
    # a message that was never built took none of its recipient's frequency-cap slots
    redis = Redis.from_url(settings.redis_url or "")
    try:
        for n in range(N):
            keys = cap_keys(f"w{await _workspace(settings, campaign_id)}.{phone(n)}", "sms",
                            datetime.now(UTC), "UTC", CapPolicy())  # fmt: skip
            assert await redis.zcard(keys.rolling_key) == (0 if broken(n) else 1), phone(n)
    finally:
        await redis.aclose()


async def test_a_header_injection_or_missing_name_fails_that_email_alone(
    settings: Settings, sink: FakeSmtp
) -> None:
    config = {"host": sink.host, "port": sink.port, "tls": "none", "connections": 2, "timeout": 5}
    campaign_id = await seed_channel_campaign(
        settings, N, kind="smtp", config=config, sender="Shop <news@shop.example>"
    )
    parts = {
        "subject": "{{ first_name }}, winter sale",
        "text_body": "Hi {{ first_name }}",
        "html_body": None,
    }
    await _break(settings, campaign_id, parts, "Eve\r\nBcc: everyone@evil.example")

    await run_rounds(settings, campaign_id, timeout=60)

    doomed = {email_address(n) for n in range(N) if broken(n)}
    assert await _failures(settings, campaign_id) == dict.fromkeys(doomed, "render_error")
    received = sorted(r for m in sink.store.messages for r in m.rcpt_tos)
    assert received == sorted(email_address(n) for n in range(N) if not broken(n))
    assert not any(b"evil.example" in (m.data or b"") for m in sink.store.messages)


async def _workspace(settings: Settings, campaign_id: int) -> int:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        found = await conn.scalar(sa.select(Message.workspace_id).where(Message.campaign_id == campaign_id))
    await engine.dispose()
    assert found is not None
    return int(found)
