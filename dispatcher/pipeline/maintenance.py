"""Housekeeping run by whichever worker picks it up (arq cron, one run per tick across all workers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.pipeline.context import resources
from dispatcher.storage import early_receipts
from dispatcher.storage.idempotency import purge_replies
from dispatcher.storage.suppressions import suppress_address
from dispatcher.storage.workers import prune_workers

IDEMPOTENCY_TTL = timedelta(hours=24)
DEAD_WORKER_AFTER = timedelta(hours=1)
# a provider id that has not reached the ledger in a week never will (the message was never ours)
EARLY_RECEIPT_TTL = timedelta(days=7)


async def housekeeping(ctx: dict[str, Any]) -> dict[str, int]:
    """Drop stored Idempotency-Key replies after 24 h and heartbeats of workers gone for an hour."""
    now = datetime.now(UTC)
    async with resources(ctx).sessions.begin() as session:
        replies = await purge_replies(session, older_than=now - IDEMPOTENCY_TTL)
        workers = await prune_workers(session, older_than=now - DEAD_WORKER_AFTER)
    return {"idempotency_replies": replies, "dead_workers": workers}


async def apply_early_receipts(ctx: dict[str, Any]) -> dict[str, int]:
    """Apply receipts that arrived before the worker wrote their provider message id (a few ms apart), and
    drop those that waited a week for it.

    Set-based and cheap when nothing waits; one transaction, so a crash leaves the receipts waiting.
    """
    now = datetime.now(UTC)
    async with resources(ctx).sessions.begin() as session:
        applied = await early_receipts.apply_held(session, now=now)
        suppressed = 0
        for row in applied:
            if row.suppress_reason is None:
                continue
            suppressed += await suppress_address(
                session,
                workspace_id=row.workspace_id,
                channel=row.channel,
                address=row.address,
                reason=row.suppress_reason,
                source=f"held receipt {row.status} of message {row.message_id}",
                now=now,
            )
        expired = await early_receipts.purge_held(session, older_than=now - EARLY_RECEIPT_TTL)
    return {"applied": len(applied), "suppressed": suppressed, "expired": expired}
