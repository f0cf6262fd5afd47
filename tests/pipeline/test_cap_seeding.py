"""Whole-ledger cap seeding with a real arq worker, real Redis, both databases and the SMS stand-in: after a
Redis restart the caps learn every send of the ledger in one pass, and only a seed that saw no restart
declares Redis's history complete."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from dispatcher.core.capping import contact_key, send_key
from dispatcher.errors import UnavailableError
from dispatcher.pipeline.cap_seeding import request_cap_seed
from dispatcher.pipeline.limits import CapRequest, ContactChannel, FrequencyCaps, Sent
from dispatcher.pipeline.queue import connect_queue
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Message
from dispatcher.storage.engine import create_engine, session_factory
from tests.helpers import drain
from tests.pipeline.campaign_setup import ledger_states, phone, run_rounds, seed_campaign

N = 40


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url or "")
    yield client
    await client.aclose()


async def _never(pairs: Sequence[ContactChannel]) -> Mapping[ContactChannel, Sequence[Sent]]:
    raise AssertionError(f"the ledger was read for {pairs}: Redis should know it holds every send")


async def _sent_rows(settings: Settings, campaign_id: int) -> list[tuple[int, int, str]]:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(
                sa.select(Message.workspace_id, Message.id, Message.address).where(
                    Message.campaign_id == campaign_id
                )
            )
            return [(ws, mid, address) for ws, mid, address in rows]
    finally:
        await engine.dispose()


async def _run_seed(settings: Settings, redis: Redis) -> None:
    pool = await connect_queue(settings.redis_url or "")
    try:
        assert await request_cap_seed(pool, settings.queue_name)
        assert not await request_cap_seed(pool, settings.queue_name)  # one attempt per window
    finally:
        await pool.aclose()
    await drain(settings)


async def _send_campaign(settings: Settings, sms_stub: str) -> int:
    campaign_id = await seed_campaign(settings, sms_stub, N)
    await run_rounds(settings, campaign_id)
    assert await ledger_states(settings, campaign_id) == {"sent": N}
    return campaign_id


async def test_after_a_restart_one_pass_restores_every_send(
    settings: Settings, sms_stub: str, redis: Redis
) -> None:
    campaign_id = await _send_campaign(settings, sms_stub)
    rows = await _sent_rows(settings, campaign_id)
    await redis.flushdb()  # Redis restarts without persistence: the caps forget everything
    caps = FrequencyCaps(redis, history=_never)
    assert await caps.complete_epoch() is None

    await _run_seed(settings, redis)

    assert await caps.complete_epoch() is not None
    for workspace_id, message_id, address in rows:
        members = await redis.zrange(f"cap:{{sms:{contact_key(workspace_id, address)}}}:r", 0, -1)
        assert members == [send_key(campaign_id, message_id).encode()]
    workspace_id = rows[0][0]
    now = datetime.now(UTC)
    again = [
        CapRequest(contact_key(workspace_id, phone(n)), "sms", f"c999m{n}", now, "UTC") for n in range(N)
    ]
    stranger = CapRequest(contact_key(workspace_id, "+15550009999"), "sms", "c999m-1", now, "UTC")
    # every recipient already had today's message; the stranger has no history, and nobody read the ledger
    assert await caps.reserve([*again, stranger]) == [False] * N + [True]


async def test_a_restart_during_the_seed_declares_nothing(redis: Redis) -> None:
    caps = FrequencyCaps(redis)
    epoch = await caps.open_epoch()
    assert await caps.open_epoch() == epoch  # a second seeder works under the same epoch
    await caps.seed_bulk([(("sms", "w1.+15550001"), "c1m1", datetime.now(UTC))])
    await redis.flushdb()
    assert not await caps.close_epoch(epoch)
    assert await caps.complete_epoch() is None
    fresh = await caps.open_epoch()
    assert fresh != epoch
    assert await caps.close_epoch(fresh)
    assert await caps.complete_epoch() == fresh


class _RestartAfterCheck(FrequencyCaps):
    """Redis restarts right after the batch found its history complete."""

    async def complete_epoch(self) -> bytes | None:
        epoch = await super().complete_epoch()
        await self._redis.flushdb()
        return epoch


async def test_a_restart_between_the_check_and_the_reservations_fails_the_batch(redis: Redis) -> None:
    seeder = FrequencyCaps(redis)
    assert await seeder.close_epoch(await seeder.open_epoch())
    caps = _RestartAfterCheck(redis, history=_never)
    with pytest.raises(UnavailableError, match="restarted"):
        await caps.reserve([CapRequest("w1.+15550001", "sms", "c1m1", datetime.now(UTC), "UTC")])


async def test_without_a_complete_history_unseen_contacts_are_read_from_the_ledger(redis: Redis) -> None:
    asked: list[Sequence[ContactChannel]] = []

    async def ledger(pairs: Sequence[ContactChannel]) -> Mapping[ContactChannel, Sequence[Sent]]:
        asked.append(pairs)
        return {}

    caps = FrequencyCaps(redis, history=ledger)
    now = datetime.now(UTC)
    assert await caps.reserve([CapRequest("w1.a", "sms", "c1m1", now, "UTC")]) == [True]
    assert asked == [[("sms", "w1.a")]]
    assert await caps.close_epoch(await caps.open_epoch())
    assert await caps.reserve([CapRequest("w1.b", "sms", "c1m2", now, "UTC")]) == [True]
    assert len(asked) == 1  # complete: a contact Redis never saw has no history
