"""Imports with a real arq worker, caught mid-way: the upload is held back after its first part.

Nothing is on the list yet, other writers are not blocked, and a suppression added meanwhile still wins:
SQLite stages rows on the job's own connection and checks them at the publish; PostgreSQL writes them in
one open transaction and takes back, just before the commit, the rows suppressed while it ran.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from arq.jobs import Job

from dispatcher.pipeline.imports import import_job_id
from dispatcher.pipeline.queue import connect_queue
from dispatcher.pipeline.worker import build_worker
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine
from dispatcher.storage.models import ConsentRecord, Contact, ContactImport
from tests.conftest import KeyMaker, bearer
from tests.pipeline.import_setup import db_scalar, running_import

NOTE = "n" * 1000  # long rows: the first stored chunk (1 MB) holds about a thousand of them
HEAD = "".join(f"+1415555{n:04d},p{n}@example.com,{NOTE}\n" for n in range(1100))
TAIL = "".join(f"+1415556{n:04d},q{n}@example.com,short\n" for n in range(100))


def _path(settings: Settings) -> str:
    return settings.database_url.removeprefix("sqlite+aiosqlite:///")


_SUPPRESS = [("sms", "+14155550007"), ("email", "p7@example.com")]  # both addresses of row 8


def _meanwhile(settings: Settings, workspace_id: int) -> int:
    """Mid-import, from another connection that would give up after 0.2 s on a locked database: suppress
    both addresses of row 8, and count the list's contacts."""
    other = sqlite3.connect(_path(settings), timeout=0.2)
    try:
        other.executemany(
            "INSERT INTO suppressions (workspace_id, channel, address, reason, source, created_at)"
            " VALUES (?, ?, ?, 'stop', '', CURRENT_TIMESTAMP)",
            [(workspace_id, channel, address) for channel, address in _SUPPRESS],
        )
        other.commit()
        return int(other.execute("SELECT count(*) FROM contacts").fetchone()[0])
    finally:
        other.close()


async def _meanwhile_pg(settings: Settings, workspace_id: int) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO suppressions (workspace_id, channel, address, reason, source, created_at)"
                    " VALUES (:w, :c, :a, 'stop', '', now())"
                ),
                [{"w": workspace_id, "c": channel, "a": address} for channel, address in _SUPPRESS],
            )
        async with engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT count(*) FROM contacts")) or 0)
    finally:
        await engine.dispose()


async def test_mid_import_the_list_is_untouched_writers_pass_and_a_new_suppression_wins(
    client: TestClient, make_key: KeyMaker, settings: Settings
) -> None:
    key = await make_key()
    made = await client.post("/v1/lists", json={"name": "L", "default_region": "US"}, headers=bearer(key))
    list_id = int((await made.json())["id"])
    seen: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"phone,email,note\n" + HEAD.encode()
        import_id = await running_import(settings, list_id)
        owner = sa.select(ContactImport.workspace_id).where(ContactImport.id == import_id)
        workspace_id = await db_scalar(settings, owner)
        if settings.is_sqlite:
            seen.append(await asyncio.to_thread(_meanwhile, settings, workspace_id))
        else:
            seen.append(await _meanwhile_pg(settings, workspace_id))
        yield TAIL.encode()

    async def upload_and_wait() -> dict[str, Any]:
        response = await client.post(
            f"/v1/lists/{list_id}/imports?consent_source=form",
            data=body(),
            headers={**bearer(key), "Content-Type": "text/csv"},
        )
        assert response.status == 202, await response.text()
        import_id = int((await response.json())["id"])
        pool = await connect_queue(settings.redis_url or "")
        try:
            await Job(import_job_id(import_id, 0), pool, _queue_name=settings.queue_name).result(
                timeout=30, poll_delay=0.05
            )
        finally:
            await pool.aclose()
        got: dict[str, Any] = await (await client.get(f"/v1/imports/{import_id}", headers=bearer(key))).json()
        return got

    worker = build_worker(settings, settings.redis_url or "")
    worker.poll_delay_s = 0.05
    task = asyncio.create_task(worker.main())
    try:
        job = await upload_and_wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()

    assert seen == [0], "contacts were visible before the publish"
    assert job["state"] == "completed", job
    assert (job["rows_done"], job["accepted"], job["suppressed"], job["duplicate"]) == (1200, 1199, 1, 0)
    assert job["reasons"] == {"suppressed": 1}
    assert await db_scalar(settings, sa.select(sa.func.count()).select_from(Contact)) == 1199
    suppressed = sa.select(sa.func.count()).select_from(Contact).where(Contact.phone == "+14155550007")
    assert await db_scalar(settings, suppressed) == 0
    assert await db_scalar(settings, sa.select(sa.func.count()).select_from(ConsentRecord)) == 2 * 1199
