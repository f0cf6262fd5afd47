"""Faults under a running SMS campaign, small and fast (``bench/faults.py`` runs them at 50,000 messages).

Redis restarted mid-campaign (a private ``redis-server``), SIGTERM rolling restarts of worker processes,
and a provider answering 429 / 503 / late 201s, with and without idempotency: every recipient gets the
message, nobody gets it twice unless the provider cannot deduplicate, and then every copy is flagged in the
ledger. SIGKILL is ``test_worker_kill.py``'s. The last test pins a bug found by the benchmark (a chunk that
sends for longer than its lease is taken from its live worker) and is expected to fail until it is fixed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.pipeline.queue import connect_queue
from dispatcher.pipeline.worker import build_worker
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine
from tests.conftest import IN_CI, _truncate_pg
from tests.pipeline import fault_tools as ft
from tests.pipeline.campaign_setup import seed_campaign, update_campaign

RECIPIENTS = 2000


@pytest.fixture
def pg_clean(pg_url: str) -> str:
    _truncate_pg()
    return pg_url


def _settings(pg_url: str, redis_url: str, tmp_path: Path, **changes: object) -> Settings:
    base = Settings(
        database_url=pg_url, redis_url=redis_url, var_dir=tmp_path, secret_key="t",
        queue_name=f"dispatcher:faults:{os.getpid()}", send_lease_s=3, queue_lease_s=3,
        worker_shutdown_wait_s=10,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def private_redis() -> AsyncIterator[ft.PrivateRedis]:
    if not ft.PrivateRedis.available():
        message = "redis-server is not installed (needed to restart a Redis of our own)"
        if IN_CI:
            pytest.fail(f"{message}: CI requires it", pytrace=False)
        pytest.skip(message)
    redis = ft.PrivateRedis()
    await redis.start()
    yield redis
    await redis.kill()


@pytest.fixture
async def stub() -> AsyncIterator[str]:
    runner, url = await ft.start_logging_stub(FakeSmsConfig(seed=3, response_latency=0.005))
    yield url
    await runner.cleanup()


Fault = Callable[[list[asyncio.subprocess.Process]], Awaitable[None]]


async def _mid_campaign(stub: str) -> None:
    assert (await ft.stub_stats(stub))["messages"] < RECIPIENTS, "the fault must land mid-campaign"


async def _run_with_workers(settings: Settings, stub: str, fault: Fault, *, rate: int) -> ft.Watch:
    """Seed, run two worker processes, inject ``fault`` once the stand-in holds 300 messages, and watch
    until the campaign is completed (or 90 s). ``rate`` (messages/s) stretches the campaign past the fault."""
    campaign_id = await seed_campaign(settings, stub, RECIPIENTS, limits={"rate_per_s": rate})
    engine = create_engine(settings.database_url, pool_size=2)
    watch = ft.Watch(engine, campaign_id)
    workers = [await ft.start_worker(settings) for _ in range(2)]
    try:
        while (await ft.stub_stats(stub)).get("messages", 0) < 300:
            await watch.look()
            await asyncio.sleep(0.05)
        await fault(workers)
        assert await watch.until_done(timeout=90), f"not completed: {watch.state}, {watch.pending} pending"
        assert [p.returncode for p in workers] == [None, None], "no worker may die of the fault"
    finally:
        for proc in workers:
            await ft.stop(proc)
        await engine.dispose()
    return watch


async def _assert_exactly_once(stub: str, watch: ft.Watch) -> None:
    states, _ = await ft.ledger_summary(watch.engine, watch.campaign_id)
    stats = await ft.stub_stats(stub)
    assert states == {"sent": RECIPIENTS}
    assert stats["unique_recipients"] == stats["messages"] == RECIPIENTS
    assert stats["recipients_with_duplicates"] == 0
    assert watch.premature == 0, "completed was shown while rows were pending"


@pytest.mark.timeout(150)
async def test_redis_restarts_mid_campaign_lose_and_double_nothing(
    pg_clean: str, private_redis: ft.PrivateRedis, stub: str, tmp_path: Path
) -> None:
    settings = _settings(pg_clean, private_redis.url(), tmp_path)

    async def restart(_: list[asyncio.subprocess.Process]) -> None:
        await _mid_campaign(stub)
        await private_redis.restart(down_for=1.0)  # every queued job is gone: the sweeper must notice

    watch = await _run_with_workers(settings, stub, restart, rate=400)
    assert private_redis.restarts == 1
    await _assert_exactly_once(stub, watch)


@pytest.mark.timeout(150)
async def test_sigterm_rolling_restart_loses_and_doubles_nothing(
    pg_clean: str, clean_redis: str, stub: str, tmp_path: Path
) -> None:
    settings = _settings(pg_clean, clean_redis, tmp_path)
    engine = create_engine(settings.database_url, pool_size=1)

    async def rolling(workers: list[asyncio.subprocess.Process]) -> None:
        for index, old in enumerate(workers):
            await _mid_campaign(stub)
            await ft.stop(old, signal.SIGTERM)
            assert old.returncode == 0, "a SIGTERMed worker exits cleanly"
            workers[index] = await ft.start_worker(settings)
            await ft.wait_for_heartbeat(engine, workers[index].pid)

    try:
        watch = await _run_with_workers(settings, stub, rolling, rate=100)
    finally:
        await engine.dispose()
    await _assert_exactly_once(stub, watch)


# --- provider faults ------------------------------------------------------------------------------------

PROVIDER = FakeSmsConfig(seed=5, rate_429=0.2, rate_503=0.2, rate_timeout_after=0.05, timeout_sleep=3.0)
SMALL = 300


def _ahead() -> datetime:
    # Back-offs grow to minutes: the jobs' clock runs an hour ahead, so each round finds every retry due.
    return datetime.now(UTC) + timedelta(hours=1)


async def _rounds(settings: Settings, watch: ft.Watch, clock: Callable[[], datetime] | None) -> None:
    """Tick and drain with an in-process arq worker until nothing of the campaign is pending (or 75 s)."""
    pool = await connect_queue(settings.redis_url or "")
    deadline = time.monotonic() + 75
    try:
        while time.monotonic() < deadline:
            await pool.enqueue_job("dispatch_tick", _queue_name=settings.queue_name)
            worker = build_worker(settings, settings.redis_url or "", burst=True, clock=clock)
            worker.poll_delay_s = 0.05
            try:
                await worker.main()
            finally:
                await worker.close()
            await watch.look()
            if watch.pending == 0:
                return
            await asyncio.sleep(0.3)
    finally:
        await pool.aclose()


@dataclass
class Outcome:
    states: dict[str, int]
    flagged: set[str]  # addresses of rows flagged possible_duplicate
    twice: set[str]  # recipients the stand-in recorded more than once
    stats: dict[str, Any]
    retry_after: ft.RetryCheck


async def _provider_campaign(
    settings: Settings, config: FakeSmsConfig, *, idempotency: bool, clock: Callable[[], datetime] | None
) -> Outcome:
    runner, url = await ft.start_logging_stub(config, honour_idempotency=idempotency)
    campaign_id = await seed_campaign(settings, url, SMALL, limits={"max_attempts": 30})
    engine = create_engine(settings.database_url, pool_size=2)
    watch = ft.Watch(engine, campaign_id)
    try:
        await ft.set_provider(engine, campaign_id, idempotency=idempotency, timeout_s=2)
        if not idempotency:
            await update_campaign(settings, campaign_id, duplicate_policy="resend")
        await _rounds(settings, watch, clock)
        states, flagged = await ft.ledger_summary(engine, campaign_id)
        return Outcome(
            states,
            flagged,
            (await ft.recipients(url))[1],
            await ft.stub_stats(url),
            ft.check_retry_after(await ft.stub_attempts(url)),
        )
    finally:
        await engine.dispose()
        await runner.cleanup()


@pytest.fixture
def fast_settings(pg_clean: str, clean_redis: str, tmp_path: Path) -> Settings:
    # leases far longer than a round: only the provider's answers decide, never the sweeper
    return _settings(pg_clean, clean_redis, tmp_path, send_lease_s=600, queue_lease_s=600)


@pytest.mark.timeout(120)
async def test_provider_faults_with_idempotency_deliver_everything_once(fast_settings: Settings) -> None:
    out = await _provider_campaign(fast_settings, PROVIDER, idempotency=True, clock=_ahead)
    assert out.states == {"sent": SMALL}
    assert out.stats["fault_timeout_after"] > 0, "some attempts must have been accepted, then timed out"
    assert out.stats["deduplicated"] >= out.stats["fault_timeout_after"]
    assert out.twice == set()
    assert out.stats["messages"] == out.stats["unique_recipients"] == SMALL


@pytest.mark.timeout(120)
async def test_provider_faults_without_idempotency_flag_every_duplicate(fast_settings: Settings) -> None:
    out = await _provider_campaign(fast_settings, PROVIDER, idempotency=False, clock=_ahead)
    assert out.states == {"sent": SMALL}
    assert out.stats.get("deduplicated", 0) == 0, "this provider ignores idempotency keys"
    assert out.twice, "late 201s without deduplication must have doubled some messages"
    # Every doubled message is reported. The report may name a few more: a row is flagged whenever the
    # client could not learn whether an attempt arrived, and on a loaded machine its timeout can fire before
    # the stand-in read the request at all.
    assert out.twice <= out.flagged, "a doubled message that the ledger does not report"
    assert len(out.flagged) <= 1.1 * len(out.twice), "flagging far more than arrived twice says nothing"
    assert out.stats["unique_recipients"] == SMALL


@pytest.mark.timeout(120)
async def test_no_retry_sooner_than_retry_after(fast_settings: Settings) -> None:
    # Retry-After of 2 s: longer than the 1 s the engine assumes when a 429 carries none, so ignoring the
    # header shows up as early retries.
    config = FakeSmsConfig(seed=7, rate_429=0.3, rate_503=0.05, retry_after=2.0)
    out = await _provider_campaign(fast_settings, config, idempotency=True, clock=None)
    assert out.states == {"sent": SMALL}
    assert out.retry_after.retried > 40
    assert out.retry_after.early == 0, out.retry_after


# --- a chunk slower than its lease ----------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_chunk_slower_than_its_send_lease_still_completes(
    pg_clean: str, clean_redis: str, tmp_path: Path
) -> None:
    settings = _settings(pg_clean, clean_redis, tmp_path, send_lease_s=1, queue_lease_s=600)
    runner, url = await ft.start_logging_stub(FakeSmsConfig(seed=9, response_latency=0.1))
    campaign_id = await seed_campaign(settings, url, 40)
    engine = create_engine(settings.database_url, pool_size=2)
    pool = await connect_queue(clean_redis)
    worker = build_worker(settings, clean_redis, burst=True)
    worker.poll_delay_s = 0.05
    try:
        # one request at a time at 100 ms: the chunk of 40 sends for ~4 s, four times its lease
        await ft.set_provider(engine, campaign_id, concurrency=1)
        await pool.enqueue_job("dispatch_tick", _queue_name=settings.queue_name)
        running = asyncio.create_task(worker.main())
        for _ in range(400):
            if "sending" in (await ft.ledger_summary(engine, campaign_id))[0]:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(settings.send_lease_s + 0.3)
        sweep = await pool.enqueue_job("sweep_ledger", _queue_name=settings.queue_name)
        assert sweep is not None
        await sweep.result(timeout=10)
        assert (await ft.stub_stats(url))["messages"] < 40, "the sweep must run while the chunk is sending"
        await running
        stats = await ft.stub_stats(url)
        states, _ = await ft.ledger_summary(engine, campaign_id)
    finally:
        await worker.close()
        await pool.aclose()
        await engine.dispose()
        await runner.cleanup()
    assert stats["messages"] == 40, "the provider accepted every message of the chunk"
    assert states == {"sent": 40}, "a live worker's answers must reach the ledger"
