"""Worker heartbeats: which workers are alive and how much they did."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.accounts import WorkerHeartbeat


async def record_heartbeat(
    session: AsyncSession, *, worker_id: str, host: str, pid: int, jobs_done: int, now: datetime
) -> None:
    result = await session.execute(
        sa.update(WorkerHeartbeat)
        .where(WorkerHeartbeat.worker_id == worker_id)
        .values(last_seen_at=now, jobs_done=jobs_done)
    )
    if getattr(result, "rowcount", 0) == 0:
        session.add(
            WorkerHeartbeat(
                worker_id=worker_id, host=host, pid=pid, started_at=now, last_seen_at=now, jobs_done=jobs_done
            )
        )


async def forget_worker(session: AsyncSession, worker_id: str) -> None:
    await session.execute(sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == worker_id))


async def live_workers(session: AsyncSession, *, now: datetime, within: timedelta) -> list[WorkerHeartbeat]:
    rows = await session.scalars(
        sa.select(WorkerHeartbeat)
        .where(WorkerHeartbeat.last_seen_at >= now - within)
        .order_by(WorkerHeartbeat.started_at)
    )
    return list(rows)


async def prune_workers(session: AsyncSession, *, older_than: datetime) -> int:
    result = await session.execute(
        sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
