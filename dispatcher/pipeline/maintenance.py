"""Housekeeping run by whichever worker picks it up (arq cron, one run per tick across all workers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.pipeline.context import resources
from dispatcher.storage.idempotency import purge_replies
from dispatcher.storage.workers import prune_workers

IDEMPOTENCY_TTL = timedelta(hours=24)
DEAD_WORKER_AFTER = timedelta(hours=1)


async def housekeeping(ctx: dict[str, Any]) -> dict[str, int]:
    """Drop stored Idempotency-Key replies after 24 h and heartbeats of workers gone for an hour."""
    now = datetime.now(UTC)
    async with resources(ctx).sessions.begin() as session:
        replies = await purge_replies(session, older_than=now - IDEMPOTENCY_TTL)
        workers = await prune_workers(session, older_than=now - DEAD_WORKER_AFTER)
    return {"idempotency_replies": replies, "dead_workers": workers}
