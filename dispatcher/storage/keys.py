"""Workspaces and API keys (hashes only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.accounts import ApiKey, Workspace


async def get_or_create_workspace(session: AsyncSession, slug: str, *, now: datetime) -> Workspace:
    found = await session.scalar(sa.select(Workspace).where(Workspace.slug == slug))
    if found is not None:
        return found
    workspace = Workspace(slug=slug, name=slug, created_at=now)
    session.add(workspace)
    await session.flush()
    return workspace


async def add_key(
    session: AsyncSession,
    *,
    workspace_id: int,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: Sequence[str],
    now: datetime,
) -> ApiKey:
    key = ApiKey(
        workspace_id=workspace_id,
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        scopes=list(scopes),
        created_at=now,
    )
    session.add(key)
    await session.flush()
    return key


async def key_by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    return await session.scalar(sa.select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))


async def list_keys(session: AsyncSession, workspace_id: int, *, after: int, limit: int) -> list[ApiKey]:
    rows = await session.scalars(
        sa.select(ApiKey)
        .where(ApiKey.workspace_id == workspace_id, ApiKey.id > after)
        .order_by(ApiKey.id)
        .limit(limit)
    )
    return list(rows)


async def get_key(session: AsyncSession, workspace_id: int, key_id: int) -> ApiKey | None:
    return await session.scalar(
        sa.select(ApiKey).where(ApiKey.workspace_id == workspace_id, ApiKey.id == key_id)
    )


async def revoke_key(session: AsyncSession, workspace_id: int, key_id: int, *, now: datetime) -> bool:
    result = await session.execute(
        sa.update(ApiKey)
        .where(ApiKey.workspace_id == workspace_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def touch_key(session: AsyncSession, key_id: int, *, now: datetime) -> None:
    await session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


async def get_workspace(session: AsyncSession, workspace_id: int) -> Workspace | None:
    return await session.get(Workspace, workspace_id)
