"""Stored replies for POSTs carrying an ``Idempotency-Key``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.accounts import IdempotentRequest


async def find_reply(session: AsyncSession, workspace_id: int, key: str) -> IdempotentRequest | None:
    return await session.scalar(
        sa.select(IdempotentRequest).where(
            IdempotentRequest.workspace_id == workspace_id, IdempotentRequest.key == key
        )
    )


async def store_reply(
    session: AsyncSession,
    *,
    workspace_id: int,
    key: str,
    fingerprint: str,
    status: int,
    body: dict[str, Any],
    now: datetime,
) -> None:
    session.add(
        IdempotentRequest(
            workspace_id=workspace_id,
            key=key,
            fingerprint=fingerprint,
            status=status,
            body=body,
            created_at=now,
        )
    )
    await session.flush()


async def purge_replies(session: AsyncSession, *, older_than: datetime) -> int:
    result = await session.execute(
        sa.delete(IdempotentRequest).where(IdempotentRequest.created_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
