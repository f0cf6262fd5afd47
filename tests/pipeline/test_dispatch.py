"""The dispatch half of the engine with a real arq worker, real Redis, both databases and the SMS stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.pipeline.queue import connect_queue
from dispatcher.settings import Settings
from tests.helpers import drain
from tests.pipeline.campaign_setup import campaign_state, ledger_states, phone, seed_campaign


@pytest.fixture
async def stub() -> AsyncIterator[tuple[web.BaseRunner, str]]:
    runner, url = await start_fake_sms(FakeSmsConfig(seed=1))
    yield runner, url
    await runner.cleanup()


async def _stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_stub/stats") as response:
        body: dict[str, Any] = await response.json()
        return body


async def _recorded(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_stub/messages?limit=100000") as response:
        body = await response.json()
        return list(body["messages"] if isinstance(body, dict) else body)


async def _tick_and_drain(settings: Settings, rounds: int = 3) -> None:
    pool = await connect_queue(settings.redis_url or "")
    for _ in range(rounds):
        await pool.enqueue_job("dispatch_tick", _queue_name=settings.queue_name)
        await drain(settings)
    await pool.aclose()


async def test_every_recipient_gets_the_message_once(
    settings: Settings, stub: tuple[web.BaseRunner, str]
) -> None:
    _, url = stub
    campaign_id = await seed_campaign(settings, url, 1200)
    await _tick_and_drain(settings)
    assert await ledger_states(settings, campaign_id) == {"sent": 1200}
    assert await campaign_state(settings, campaign_id) == "completed"
    messages = await _recorded(url)
    assert len(messages) == 1200
    assert sorted(m["to"] for m in messages) == sorted(phone(n) for n in range(1200))
    assert messages[0]["body"].startswith("Hi P")
    stats = await _stats(url)
    assert stats["messages"] == stats["unique_recipients"] == 1200
    assert stats["recipients_with_duplicates"] == 0


async def test_quiet_hours_hold_messages_back(settings: Settings, stub: tuple[web.BaseRunner, str]) -> None:
    _, url = stub
    # a one-minute window that is never "now" in Kiritimati and Honolulu at once: nothing may go
    campaign_id = await seed_campaign(
        settings,
        url,
        20,
        windows="03:00-03:01",
        allowed="03:00-03:01",
        zones=("Pacific/Kiritimati", "Pacific/Honolulu"),
    )
    await _tick_and_drain(settings, rounds=1)
    states = await ledger_states(settings, campaign_id)
    assert states.get("sent", 0) == 0
    assert sum(states.values()) == 20
    assert set(states) <= {"planned", "expired"}
    assert await _recorded(url) == []
