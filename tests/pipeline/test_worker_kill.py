"""SIGKILL a worker process mid-campaign: every recipient still gets the message exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.settings import Settings
from tests.conftest import _truncate_pg
from tests.pipeline.campaign_setup import campaign_state, ledger_states, seed_campaign
from tests.pipeline.fault_tools import start_worker, stub_stats

RECIPIENTS = 3000


@pytest.fixture
def pg_settings(pg_url: str, clean_redis: str, tmp_path: Path) -> Settings:
    _truncate_pg()
    return Settings(
        database_url=pg_url,
        redis_url=clean_redis,
        var_dir=tmp_path,
        secret_key="t",
        queue_name=f"dispatcher:kill:{os.getpid()}",
        send_lease_s=3,
        queue_lease_s=3,
    )


@pytest.fixture
async def stub() -> AsyncIterator[str]:
    runner, url = await start_fake_sms(FakeSmsConfig(seed=3, response_latency=0.01))
    yield url
    await runner.cleanup()


async def test_sigkill_mid_campaign_loses_nothing_and_doubles_nothing(
    pg_settings: Settings, stub: str
) -> None:
    campaign_id = await seed_campaign(pg_settings, stub, RECIPIENTS, limits={"rate_per_s": 500})
    first = await start_worker(pg_settings)
    second = None
    try:
        for _ in range(300):
            if (await stub_stats(stub)).get("messages", 0) >= 400:
                break
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)  # no clean-up of any kind: leases must recover its work
        await first.wait()
        killed_at = (await stub_stats(stub))["messages"]
        assert 0 < killed_at < RECIPIENTS, "the kill must land mid-campaign"
        second = await start_worker(pg_settings)
        for _ in range(600):
            if await campaign_state(pg_settings, campaign_id) == "completed":
                break
            await asyncio.sleep(0.2)
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
    stats = await stub_stats(stub)
    assert await ledger_states(pg_settings, campaign_id) == {"sent": RECIPIENTS}
    assert await campaign_state(pg_settings, campaign_id) == "completed"
    assert stats["unique_recipients"] == RECIPIENTS
    assert stats["messages"] == RECIPIENTS
    assert stats["recipients_with_duplicates"] == 0
