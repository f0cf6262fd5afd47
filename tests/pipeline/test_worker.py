"""A real arq worker against real Redis and the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dispatcher.pipeline.queue import connect_queue, job_id
from dispatcher.pipeline.worker import build_worker
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.idempotency import store_reply
from dispatcher.storage.keys import get_or_create_workspace
from dispatcher.storage.models import IdempotentRequest, WorkerHeartbeat


@pytest.mark.parametrize(
    ("kind", "parts", "expected"),
    [
        ("import", (42,), "import:42"),
        ("send", (7, "batch", 3), "send:7:batch:3"),
        ("housekeeping", (), "housekeeping"),
    ],
)
def test_job_ids_are_deterministic(kind: str, parts: tuple[int | str, ...], expected: str) -> None:
    assert job_id(kind, *parts) == expected == job_id(kind, *parts)


@pytest.mark.parametrize("kind", ["", "a:b"])
def test_bad_job_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="kind"):
        job_id(kind, 1)


async def _count(settings: Settings, model: type) -> int:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(sa.func.count()).select_from(model))
    await engine.dispose()
    return int(value or 0)


async def test_housekeeping_job_runs_once_per_id_and_purges(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    long_ago = datetime.now(UTC) - timedelta(days=3)
    async with session_factory(engine).begin() as session:
        ws = await get_or_create_workspace(session, "w", now=long_ago)
        await store_reply(
            session, workspace_id=ws.id, key="old", fingerprint="f", status=201, body={}, now=long_ago
        )
        await store_reply(
            session,
            workspace_id=ws.id,
            key="new",
            fingerprint="f",
            status=201,
            body={},
            now=datetime.now(UTC),
        )
    await engine.dispose()
    pool = await connect_queue(settings.redis_url or "")
    first = await pool.enqueue_job(
        "housekeeping", _job_id=job_id("housekeeping", "t1"), _queue_name=settings.queue_name
    )
    again = await pool.enqueue_job(
        "housekeeping", _job_id=job_id("housekeeping", "t1"), _queue_name=settings.queue_name
    )
    assert first is not None
    assert again is None  # same id: arq refuses the duplicate
    worker = build_worker(settings, settings.redis_url or "", burst=True)
    await worker.main()
    await worker.close()
    assert worker.jobs_complete == 1
    assert await first.result(timeout=5) == {"idempotency_replies": 1, "dead_workers": 0}
    assert await _count(settings, IdempotentRequest) == 1
    await pool.aclose()


async def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_worker_process_heartbeats_and_shuts_down_cleanly_on_sigterm(settings: Settings) -> None:
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url or "",
        DISPATCHER_QUEUE=settings.queue_name,
        DISPATCHER_VAR_DIR=str(settings.var_dir),
        DISPATCHER_SHUTDOWN_WAIT="5",
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dispatcher", "worker", env=env)
    try:
        assert await _wait_for(lambda: _has_heartbeat(settings), 30), "worker never reported a heartbeat"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await _count(settings, WorkerHeartbeat) == 0  # it said goodbye


async def _has_heartbeat(settings: Settings) -> bool:
    return await _count(settings, WorkerHeartbeat) > 0


async def test_worker_refuses_redis_that_may_evict_jobs(settings: Settings) -> None:
    import redis.asyncio as aioredis

    from dispatcher.errors import UnavailableError

    client = aioredis.Redis.from_url(settings.redis_url or "")
    before = (await client.config_get("maxmemory-policy"))["maxmemory-policy"]
    await client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(UnavailableError, match="noeviction"):
            await connect_queue(settings.redis_url or "")
    finally:
        await client.config_set("maxmemory-policy", before)
        await client.aclose()


async def test_a_job_running_elsewhere_is_not_asked_about_again_for_a_second(settings: Settings) -> None:
    pool = await connect_queue(settings.redis_url or "")
    asked: list[int] = []
    pipeline = pool.pipeline

    def counting(*args: object, **kwargs: object) -> object:  # a spy on the real pipeline
        asked.append(1)
        return pipeline(*args, **kwargs)  # type: ignore[arg-type]

    worker = build_worker(settings, settings.redis_url or "", burst=True)
    try:
        await pool.enqueue_job("housekeeping", _job_id="busy-elsewhere", _queue_name=settings.queue_name)
        await pool.set("arq:in-progress:busy-elsewhere", b"1", px=60_000)  # another worker runs it
        pool.pipeline = counting  # type: ignore[method-assign]
        worker._pool = pool
        await worker.start_jobs([b"busy-elsewhere"])
        assert (len(asked), worker.job_counter, worker.tasks) == (1, 0, {})
        await worker.start_jobs([b"busy-elsewhere"])  # within the second: Redis is not asked again
        assert len(asked) == 1
        worker._elsewhere["busy-elsewhere"] = 0.0  # the second has passed
        await worker.start_jobs([b"busy-elsewhere"])
        assert (len(asked), worker.job_counter) == (2, 0)
    finally:
        pool.pipeline = pipeline  # type: ignore[method-assign]
        await pool.aclose()
