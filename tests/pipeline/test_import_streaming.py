"""The import job starts on the first stored chunk while the rest of the upload still arrives.

A real arq worker runs beside the API; the upload's body generator holds the rest of the file back until the
job is seen running, so these tests fail if the job only starts once the upload is complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from arq.jobs import Job

from dispatcher.api.app import create_app
from dispatcher.pipeline.imports import import_job_id
from dispatcher.pipeline.queue import connect_queue
from dispatcher.pipeline.worker import build_worker
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine
from dispatcher.storage.models import Contact, ContactImport, ImportChunk, ImportReject, StagedContact
from tests.conftest import KeyMaker, bearer
from tests.pipeline.import_setup import running_import

NOTE = "n" * 1000  # long rows: the first stored chunk (1 MB) holds about a thousand of them
HEAD = "".join(f"+1415555{n:04d},p{n}@example.com,{NOTE}\n" for n in range(1100)) + "junk,junk,x\n"
TAIL = "".join(f"+1415556{n:04d},q{n}@example.com,short\n" for n in range(100))


async def _count(settings: Settings, model: Any, *where: Any) -> int:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(sa.func.count()).select_from(model).where(*where))
    await engine.dispose()
    return int(value or 0)


async def _with_worker(settings: Settings, upload: Any) -> Any:
    """Run ``upload`` beside a real (not burst) arq worker, which picks up a job queued mid-upload."""
    worker = build_worker(settings, settings.redis_url or "")
    worker.poll_delay_s = 0.05
    task = asyncio.create_task(worker.main())
    try:
        return await upload
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()


async def _job_result(settings: Settings, import_id: int) -> Any:
    pool = await connect_queue(settings.redis_url or "")
    try:
        job = Job(import_job_id(import_id, 0), pool, _queue_name=settings.queue_name)
        return await job.result(timeout=30, poll_delay=0.05)
    finally:
        await pool.aclose()


async def _new_list(client: TestClient, key: str) -> int:
    made = await client.post("/v1/lists", json={"name": "L", "default_region": "US"}, headers=bearer(key))
    return int((await made.json())["id"])


async def test_the_job_cleans_while_the_upload_arrives_and_counts_exactly(
    client: TestClient, make_key: KeyMaker, settings: Settings
) -> None:
    key = await make_key()
    list_id = await _new_list(client, key)

    async def body() -> AsyncIterator[bytes]:
        yield b"phone,email,note\n" + HEAD.encode()
        await running_import(settings, list_id)
        yield TAIL.encode()

    async def upload_and_wait() -> dict[str, Any]:
        response = await client.post(
            f"/v1/lists/{list_id}/imports", data=body(), headers={**bearer(key), "Content-Type": "text/csv"}
        )
        assert response.status == 202, await response.text()
        import_id = int((await response.json())["id"])
        await _job_result(settings, import_id)
        got: dict[str, Any] = await (await client.get(f"/v1/imports/{import_id}", headers=bearer(key))).json()
        return got

    job = await _with_worker(settings, upload_and_wait())
    assert job["state"] == "completed", job
    assert (job["rows_done"], job["accepted"], job["rejected"], job["duplicate"]) == (1201, 1200, 1, 0)
    assert job["percent"] == 100.0
    assert await _count(settings, Contact, Contact.list_id == list_id) == 1200
    assert await _count(settings, ImportChunk) == 0


async def test_an_upload_refused_after_its_job_started_leaves_nothing(
    aiohttp_client: Any, make_key: KeyMaker, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(max_upload_bytes=2 << 20)))
    key = await make_key()
    list_id = await _new_list(client, key)
    started: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"phone,email,note\n" + HEAD.encode()
        started.append(await running_import(settings, list_id))
        yield HEAD.encode()  # over the 2 MB limit: 413

    async def upload() -> Any:
        response = await client.post(
            f"/v1/lists/{list_id}/imports", data=body(), headers={**bearer(key), "Content-Type": "text/csv"}
        )
        assert response.status == 413
        return await _job_result(settings, started[0])

    assert await _with_worker(settings, upload()) == {"skipped": "upload refused"}
    for model in (Contact, ContactImport, ImportChunk, ImportReject, StagedContact):
        assert await _count(settings, model) == 0, model
