"""The dispatch loop: a one-second tick claims due ledger rows in chunks and queues one send job per chunk;
the sweeper hands back leases of jobs that vanished (Redis restart) or of workers that died.

Redis carries only ``(campaign_id, owner, ids)``; the database decides everything. The tick is an arq cron
with a unique id per second, so one worker runs it; if two ever overlap, ``claim_due`` (SKIP LOCKED on
PostgreSQL, a single writer on SQLite) still gives each row to one chunk.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from dispatcher.logs import get_logger
from dispatcher.pipeline.cap_seeding import request_cap_seed
from dispatcher.pipeline.context import WorkerResources, queue, resources
from dispatcher.pipeline.queue import job_id
from dispatcher.storage import campaigns_q, leases, ledger
from dispatcher.storage.campaigns import Campaign

log = get_logger(__name__)
CHUNK = 1_000  # one send job: big enough that per-job costs (arq, transactions) vanish per message
# Rows leased by one claim statement, queued as several chunks. Without an index ordering a campaign's due
# rows, each claim sorts what is left of the campaign, so fewer, larger claims cost the database far less.
CLAIM = 5 * CHUNK
MAX_PER_TICK = 20_000  # per campaign: above the fastest provider we drive, below what one tick can queue


async def dispatch_tick(ctx: dict[str, Any]) -> dict[str, int]:
    res = resources(ctx)
    now = res.clock()
    async with res.sessions() as session:
        campaigns = await campaigns_q.running_campaigns(session)
    queued = 0
    for campaign in campaigns:
        queued += await _pump(ctx, res, campaign, now)
        async with res.sessions.begin() as session:
            if await campaigns_q.complete_if_done(session, campaign.id, now=now):
                log.info("campaign.completed", campaign_id=campaign.id)
    return {"campaigns": len(campaigns), "queued": queued}


def _limit(campaign: Campaign) -> int:
    rate = (campaign.limits or {}).get("rate_per_s")
    # no point leasing more than a couple of seconds' worth when the campaign is throttled
    return min(MAX_PER_TICK, max(CHUNK, int(float(rate) * 2))) if rate else MAX_PER_TICK


async def _pump(ctx: dict[str, Any], res: WorkerResources, campaign: Campaign, now: datetime) -> int:
    """Lease due rows and queue them as chunks. The chunks of one claim share its lease owner: their ids
    are disjoint and every later UPDATE names ids, state and owner, so no chunk can touch another's rows."""
    total = 0
    limit = _limit(campaign)
    while total < limit:
        owner = job_id("send", campaign.id, f"{time.time_ns()}")
        wanted = min(CLAIM, limit - total)
        async with res.sessions.begin() as session:
            ids = await ledger.claim_due(
                session,
                campaign_id=campaign.id,
                now=now,
                limit=wanted,
                owner=owner,
                lease_until=now + timedelta(seconds=res.settings.queue_lease_s),
            )
        for start in range(0, len(ids), CHUNK):
            await queue(ctx).enqueue_job(
                "send_chunk",
                campaign.id,
                owner,
                ids[start : start + CHUNK],
                _job_id=f"{owner}:{start // CHUNK}",
                _queue_name=res.settings.queue_name,
            )
        total += len(ids)
        if len(ids) < wanted:  # nothing more is due now
            break
    return total


async def sweep_ledger(ctx: dict[str, Any]) -> dict[str, int]:
    """Hand back rows whose lease ran out: queued ones were never sent; sending ones may have been."""
    res = resources(ctx)
    async with res.sessions.begin() as session:
        # every provider we drive deduplicates on the idempotency key, so an unacknowledged send is resent
        queued, sending = await leases.release_expired_leases(
            session, now=res.clock(), resend_unacknowledged=True
        )
    if queued or sending:
        log.warning("ledger.leases_released", queued=queued, sending=sending)
    # a Redis that restarted without persistence forgot the caps' history: rebuild it in one pass
    await request_cap_seed(queue(ctx), res.settings.queue_name)
    return {"queued": queued, "sending": sending}
