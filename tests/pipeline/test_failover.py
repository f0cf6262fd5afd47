"""Several providers per channel: a sick or killed provider's traffic moves to the next one, and every
recipient is served exactly once across both (real arq worker, real stubs over sockets, both databases)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.settings import Settings
from tests.pipeline.campaign_setup import (
    add_provider,
    ledger_states,
    messages_by,
    phone,
    run_rounds,
    seed_campaign,
    unsent_details,
)


async def _recorded(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_stub/messages?limit=100000") as response:
        body = await response.json()
        return list(body["messages"] if isinstance(body, dict) else body)


@pytest.fixture
async def stubs() -> AsyncIterator[list[tuple[web.BaseRunner, str]]]:
    started: list[tuple[web.BaseRunner, str]] = []

    async def start(config: FakeSmsConfig) -> tuple[web.BaseRunner, str]:
        runner, url = await start_fake_sms(config)
        started.append((runner, url))
        return runner, url

    yield started  # type: ignore[misc]
    for runner, _ in started:
        await runner.cleanup()


async def test_a_sick_provider_trips_its_circuit_and_the_next_one_serves_everyone(settings: Settings) -> None:
    sick_runner, sick = await start_fake_sms(FakeSmsConfig(seed=3, rate_503=1.0))
    well_runner, well = await start_fake_sms(FakeSmsConfig(seed=4))
    try:
        campaign_id = await seed_campaign(settings, sick, 600)
        backup = await add_provider(settings, campaign_id, well)
        await run_rounds(settings, campaign_id, timeout=90)
        states = await ledger_states(settings, campaign_id)
        assert states == {"sent": 600}, await unsent_details(settings, campaign_id)
        rows = await messages_by(settings, campaign_id)
        assert {provider for _, _, provider, _ in rows} == {backup}
        received = Counter(m["to"] for m in await _recorded(well))
        assert sorted(received) == sorted(phone(n) for n in range(600))
        assert set(received.values()) == {1}
        assert await _recorded(sick) == []  # 503 before accepting: nothing arrived there
    finally:
        await sick_runner.cleanup()
        await well_runner.cleanup()


async def test_killing_the_primary_mid_campaign_moves_its_traffic_exactly_once(settings: Settings) -> None:
    primary_runner, primary = await start_fake_sms(FakeSmsConfig(seed=5))
    backup_runner, backup = await start_fake_sms(FakeSmsConfig(seed=6))
    try:
        # 400/s on the primary: the first round sends about a second's worth, then the primary dies
        campaign_id = await seed_campaign(settings, primary, 2000, limits={"rate_per_s": 400})
        await add_provider(settings, campaign_id, backup)
        await run_rounds(settings, campaign_id, timeout=0.1)
        before = len(await _recorded(primary))
        assert 0 < before < 2000
        site = next(iter(primary_runner.sites))
        await site.stop()  # the provider's listener is gone; what it accepted stays in its store
        await run_rounds(settings, campaign_id, timeout=60)
        states = await ledger_states(settings, campaign_id)
        # rows whose attempt was in doubt wait for the only provider that can deduplicate them
        await web.TCPSite(primary_runner, "127.0.0.1", int(primary.rsplit(":", 1)[1])).start()
        await run_rounds(settings, campaign_id, timeout=60)
        states = await ledger_states(settings, campaign_id)
        assert states == {"sent": 2000}
        first = Counter(m["to"] for m in await _recorded(primary))
        second = Counter(m["to"] for m in await _recorded(backup))
        assert not set(first) & set(second), "a recipient got the message from both providers"
        assert set(first.values()) <= {1}
        assert set(second.values()) <= {1}
        assert sorted([*first, *second]) == sorted(phone(n) for n in range(2000))
        assert len(second) > 0
    finally:
        await primary_runner.cleanup()
        await backup_runner.cleanup()
