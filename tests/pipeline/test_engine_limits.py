"""Budget, auto-pause on bounces, provider throttling and send-time caps, through a real arq worker."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import sqlalchemy as sa

from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Message
from dispatcher.storage.engine import create_engine
from tests.pipeline.campaign_setup import (
    campaign_row,
    clone_campaign,
    ledger_states,
    messages_by,
    run_rounds,
    seed_campaign,
    update_campaign,
)


async def _stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_stub/stats") as response:
        body: dict[str, Any] = await response.json()
        return body


async def test_the_budget_is_never_passed_and_the_campaign_pauses_at_it(settings: Settings) -> None:
    runner, url = await start_fake_sms(FakeSmsConfig(seed=1))
    try:
        campaign_id = await seed_campaign(settings, url, 300)
        # 0.0075 a segment, one segment each: room for exactly 100 messages... in whole chunks that fit
        await update_campaign(settings, campaign_id, budget=Decimal("0.75"))
        await run_rounds(settings, campaign_id, timeout=20)
        campaign = await campaign_row(settings, campaign_id)
        states = await ledger_states(settings, campaign_id)
        assert campaign.state == "paused"
        assert campaign.pause_reason == "budget_exhausted"
        assert Decimal(campaign.spent) <= Decimal("0.75")
        assert states.get("sent", 0) == (await _stats(url))["messages"]
        assert states.get("sent", 0) * Decimal("0.0075") == Decimal(campaign.spent)
        assert sum(states.values()) == 300
        assert states.get("planned", 0) > 0
    finally:
        await runner.cleanup()


async def test_a_high_bounce_rate_pauses_the_campaign(settings: Settings) -> None:
    runner, url = await start_fake_sms(FakeSmsConfig(seed=2))
    try:
        campaign_id = await seed_campaign(
            # 300/s: a round leases one chunk of 1,000, so the pause lands before the rest is claimed
            settings,
            url,
            2500,
            limits={"bounce_min_sample": 100, "max_bounce_rate": 0.1, "rate_per_s": 300},
        )
        engine = create_engine(settings.database_url)
        async with engine.begin() as conn:  # every third address is not a number the provider takes
            await conn.execute(
                sa.update(Message)
                .where(Message.campaign_id == campaign_id, Message.id % 3 == 0)
                .values(address=sa.literal("+1x") + sa.cast(Message.id, sa.String))
            )
        await engine.dispose()
        await run_rounds(settings, campaign_id, timeout=20)
        campaign = await campaign_row(settings, campaign_id)
        assert campaign.state == "paused"
        assert campaign.pause_reason == "bounce_rate"
        rows = await messages_by(settings, campaign_id)
        failed = [code for _, state, _, code in rows if state == "failed"]
        assert failed
        assert set(failed) == {"invalid_number"}
        assert any(state == "planned" for _, state, _, _ in rows)  # it stopped before the end
    finally:
        await runner.cleanup()


async def test_throttled_provider_is_retried_no_sooner_than_retry_after(settings: Settings) -> None:
    runner, url = await start_fake_sms(FakeSmsConfig(seed=3, rate_429=0.3, retry_after=1.0))
    try:
        campaign_id = await seed_campaign(settings, url, 300)
        await run_rounds(settings, campaign_id, timeout=60)
        assert await ledger_states(settings, campaign_id) == {"sent": 300}
        stats = await _stats(url)
        assert stats["messages"] == stats["unique_recipients"] == 300
        assert stats["recipients_with_duplicates"] == 0
    finally:
        await runner.cleanup()


async def test_send_time_caps_hold_across_campaigns(settings: Settings) -> None:
    runner, url = await start_fake_sms(FakeSmsConfig(seed=4))
    try:
        first = await seed_campaign(settings, url, 50, limits={"per_local_day": 1})
        await run_rounds(settings, first, timeout=20)
        assert await ledger_states(settings, first) == {"sent": 50}
        # the same people, in a second campaign of the same workspace: already messaged today
        second = await clone_campaign(settings, first)
        await run_rounds(settings, second, timeout=20)
        assert await ledger_states(settings, second) == {"capped": 50}
        assert (await _stats(url))["messages"] == 50
    finally:
        await runner.cleanup()


async def test_a_refused_message_gives_its_cap_slot_back(settings: Settings) -> None:
    runner, url = await start_fake_sms(FakeSmsConfig(seed=5))
    refused = "+15005550003"  # the stand-in refuses it for good (21408), and that suppresses nobody
    try:
        first = await seed_campaign(settings, url, 40, limits={"per_local_day": 1})
        engine = create_engine(settings.database_url)
        async with engine.begin() as conn:
            lowest = sa.select(sa.func.min(Message.id)).where(Message.campaign_id == first).scalar_subquery()
            await conn.execute(sa.update(Message).where(Message.id == lowest).values(address=refused))
        await engine.dispose()
        await run_rounds(settings, first, timeout=20)
        assert await ledger_states(settings, first) == {"sent": 39, "failed": 1}
        # the same addresses again today: those that got a message are capped; the refused one was never
        # messaged, so it goes to the provider again (which refuses it again) instead of being capped
        second = await clone_campaign(settings, first)
        await run_rounds(settings, second, timeout=20)
        assert await ledger_states(settings, second) == {"capped": 39, "failed": 1}
        rows = await messages_by(settings, second)
        assert [(state, code) for address, state, _, code in rows if address == refused] == [
            ("failed", "region_not_enabled")
        ]
    finally:
        await runner.cleanup()
