"""Whole-ledger cap seeding: once per Redis lifetime, every send the frequency caps count goes into Redis.

Until then each contact new to Redis costs a ledger read and a second script call in its batch (see
:mod:`dispatcher.pipeline.limits`); afterwards Redis is known to hold the ledger's whole history, and a
contact it has never seen simply has none. The job is queued when a worker starts and by the ledger
sweeper whenever the history is not known complete (a new Redis, or one that restarted without
persistence); one runs at a time (a lock key), and a second attempt within ten minutes is refused by its
job id. A crash midway leaves a partial seed, harmless: sends are added with ``NX`` and the next attempt
adds the rest before declaring anything complete.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from arq import ArqRedis

from dispatcher.logs import get_logger
from dispatcher.pipeline.context import queue, resources
from dispatcher.pipeline.gates import CAP_HORIZON
from dispatcher.pipeline.limits import SEEDING_KEY, FrequencyCaps
from dispatcher.storage import cap_history

log = get_logger(__name__)
LOCK_S = 900  # longer than a seed of tens of millions of sends takes; a dead seeder's lock lapses after it
ATTEMPT_EVERY_S = 600


async def request_cap_seed(redis: ArqRedis, queue_name: str) -> bool:
    """Queue a seed unless Redis's history is complete; True if one was queued."""
    if await FrequencyCaps(redis).complete_epoch() is not None:
        return False
    window = int(time.time() // ATTEMPT_EVERY_S)
    job = await redis.enqueue_job("seed_caps", _job_id=f"seed-caps:{window}", _queue_name=queue_name)
    return job is not None


async def seed_caps(ctx: dict[str, Any]) -> dict[str, int]:
    res = resources(ctx)
    redis = queue(ctx)
    caps = FrequencyCaps(redis)
    if await caps.complete_epoch() is not None:
        return {"seeded": 0}
    token = uuid.uuid4().hex
    if not await redis.set(SEEDING_KEY, token, nx=True, ex=LOCK_S):
        return {"busy": 1}
    try:
        # the epoch first: a send reserved from here on is in Redis, one reserved earlier is in the ledger
        epoch = await caps.open_epoch()
        started = time.monotonic()
        sends = contacts = 0
        async with res.sessions() as session:
            async for batch in cap_history.sends_since(session, res.clock() - CAP_HORIZON):
                contacts += await caps.seed_bulk([((c, contact), key, at) for c, contact, key, at in batch])
                sends += len(batch)
        complete = await caps.close_epoch(epoch)
    finally:
        if await redis.get(SEEDING_KEY) == token.encode():
            await redis.delete(SEEDING_KEY)
    elapsed = round(time.monotonic() - started, 2)
    log.info("caps.seeded", sends=sends, contact_batches=contacts, seconds=elapsed, complete=complete)
    return {"seeded": sends, "complete": int(complete)}
