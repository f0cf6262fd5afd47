"""SIGKILL a real worker mid-import on PostgreSQL, where rows go straight into the list in one transaction.

While it runs, progress shows through the API and not one contact is visible; after the kill nothing is
left on the list; the sweeper's new attempt then imports every row exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.pipeline.queue import connect_queue
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine
from dispatcher.storage.models import ConsentRecord, Contact, ContactImport, ContactList
from tests.conftest import KeyMaker, bearer
from tests.helpers import drain
from tests.pipeline.import_setup import db_scalar

ROWS = 60_000


def _csv() -> bytes:
    lines = [f"+1415{200 + n // 10000:03d}{n % 10000:04d},p{n}@example.com,N{n}\n" for n in range(ROWS)]
    return ("phone,email,first_name\n" + "".join(lines)).encode()


async def _worker(settings: Settings) -> asyncio.subprocess.Process:
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url or "",
        DISPATCHER_QUEUE=settings.queue_name,
        DISPATCHER_VAR_DIR=str(settings.var_dir),
        DISPATCHER_LOG_LEVEL="WARNING",
        DISPATCHER_CLEAN_PROCESSES="1",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher", "worker", env=env, start_new_session=True
    )


def _count(model: Any, *where: Any) -> Any:
    return sa.select(sa.func.count()).select_from(model).where(*where)


async def _kill_mid_import(client: TestClient, key: str, settings: Settings, import_id: int) -> int:
    """Wait until the API shows progress, check the list is still empty, kill the worker's whole group."""
    worker = await _worker(settings)
    try:
        seen = 0
        for _ in range(600):
            job = await (await client.get(f"/v1/imports/{import_id}", headers=bearer(key))).json()
            if job["state"] == "running" and job["rows_done"] > 0:
                seen = job["rows_done"]
                assert job["accepted"] > 0
                assert await db_scalar(settings, _count(Contact)) == 0, "rows visible before the commit"
                break
            assert job["state"] != "completed", "the import finished before it could be killed"
            await asyncio.sleep(0.05)
        assert seen, "no progress was ever shown"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # its own session: the cleaning process goes with it
        await worker.wait()
    return seen


async def test_sigkill_mid_import_leaves_nothing_and_the_retry_is_exact(
    client: TestClient, make_key: KeyMaker, settings: Settings
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the one-transaction load is the PostgreSQL path; SQLite stages then publishes")
    key = await make_key()
    made = await client.post("/v1/lists", json={"name": "L", "default_region": "US"}, headers=bearer(key))
    list_id = int((await made.json())["id"])
    response = await client.post(
        f"/v1/lists/{list_id}/imports?consent_source=form",
        data=_csv(),
        headers={**bearer(key), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    import_id = int((await response.json())["id"])

    seen = await _kill_mid_import(client, key, settings, import_id)
    assert 0 < seen < ROWS
    assert await db_scalar(settings, _count(Contact)) == 0
    assert await db_scalar(settings, _count(ConsentRecord)) == 0

    engine = create_engine(settings.database_url)  # what the sweeper sees once the heartbeat is old
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(ContactImport)
            .where(ContactImport.id == import_id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    await engine.dispose()
    # arq would hand the dead worker's job out again only after its 6-hour timeout (a burst worker waits
    # for it): forget it, as a Redis restart would, and let the sweeper queue the new attempt.
    pool = await connect_queue(settings.redis_url or "")
    await pool.flushdb()
    await pool.enqueue_job("sweep_imports", _queue_name=settings.queue_name)
    await pool.aclose()
    await drain(settings)
    await drain(settings)

    job = await (await client.get(f"/v1/imports/{import_id}", headers=bearer(key))).json()
    assert job["state"] == "completed", job
    assert (job["rows_done"], job["accepted"], job["duplicate"], job["rejected"]) == (ROWS, ROWS, 0, 0)
    assert await db_scalar(settings, _count(Contact, Contact.list_id == list_id)) == ROWS
    assert await db_scalar(settings, _count(ConsentRecord, ConsentRecord.import_id == import_id)) == 2 * ROWS
    listed = sa.select(ContactList.contact_count).where(ContactList.id == list_id)
    assert await db_scalar(settings, listed) == ROWS
