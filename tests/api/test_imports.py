"""Imports end to end over HTTP with a real arq worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.models import ConsentRecord, Contact, ImportChunk, StagedContact, Suppression
from tests.conftest import KeyMaker, bearer
from tests.helpers import drain

CSV = (
    "phone,email,first_name,age_band\r\n"
    "+1 (415) 555-2671,ann@example.com,Ann,25-34\r\n"  # accepted
    "415.555.2672,,Bob,35-44\r\n"  # accepted via default region US
    "00441632960961,cy@example.org,Cy,18-24\r\n"  # invalid UK fiction number but valid e-mail: accepted
    "+14155552671,ann2@example.com,Ann again,25-34\r\n"  # duplicate phone in file
    ",,Nobody,\r\n"  # empty
    "12,not-an-email,Bad,\r\n"  # rejected
    "=HYPERLINK(1),,Formula,\r\n"  # rejected; must be defused in the rejects CSV
    "+16505550100,dee@example.com,Dee,45-54,extra\r\n"  # malformed: too many fields
)


@pytest.fixture
async def key(make_key: KeyMaker) -> str:
    return await make_key()


async def _new_list(client: TestClient, key: str, **extra: Any) -> int:
    response = await client.post(
        "/v1/lists", json={"name": "L", "default_region": "US", **extra}, headers=bearer(key)
    )
    assert response.status == 201
    return int((await response.json())["id"])


async def _upload(
    client: TestClient, key: str, list_id: int, body: bytes, query: str = ""
) -> aiohttp.ClientResponse:
    return await client.post(
        f"/v1/lists/{list_id}/imports{query}", data=body, headers={**bearer(key), "Content-Type": "text/csv"}
    )


async def _finished(client: TestClient, key: str, settings: Settings, import_id: int) -> dict[str, Any]:
    await drain(settings)
    body: dict[str, Any] = await (await client.get(f"/v1/imports/{import_id}", headers=bearer(key))).json()
    return body


def _check_buckets(job: dict[str, Any]) -> None:
    assert job["accepted"] + job["rejected"] + job["duplicate"] + job["suppressed"] == job["rows_done"]


async def _count(settings: Settings, model: type, *where: Any) -> int:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(sa.func.count()).select_from(model).where(*where))
    await engine.dispose()
    return int(value or 0)


async def test_import_cleans_counts_and_publishes(client: TestClient, key: str, settings: Settings) -> None:
    list_id = await _new_list(client, key)
    response = await _upload(client, key, list_id, CSV.encode(), "?consent_source=web-form")
    started = await response.json()
    assert response.status == 202, started
    assert started["state"] == "queued"
    job = await _finished(client, key, settings, started["id"])
    assert job["state"] == "completed", job
    assert job["rows_done"] == 8
    assert (job["accepted"], job["rejected"], job["duplicate"], job["suppressed"]) == (3, 4, 1, 0)
    # "12,not-an-email" fails on its phone first (documented precedence), like the formula row
    assert job["reasons"] == {"empty": 1, "invalid_phone": 2, "malformed_row": 1, "duplicate_in_file": 1}
    _check_buckets(job)
    assert job["percent"] == 100.0
    listed = await (await client.get(f"/v1/lists/{list_id}", headers=bearer(key))).json()
    assert listed["contact_count"] == 3
    assert await _count(settings, Contact, Contact.list_id == list_id) == 3
    # one consent record per address of each new contact: Ann (phone + e-mail), Bob (phone), Cy (e-mail)
    assert await _count(settings, ConsentRecord, ConsentRecord.source == "web-form") == 4
    assert await _count(settings, StagedContact) == 0
    assert await _count(settings, ImportChunk) == 0


async def test_rejects_download_names_row_reason_and_values_safely(
    client: TestClient, key: str, settings: Settings
) -> None:
    list_id = await _new_list(client, key)
    started = await (await _upload(client, key, list_id, CSV.encode())).json()
    await _finished(client, key, settings, started["id"])
    response = await client.get(f"/v1/imports/{started['id']}/rejects", headers=bearer(key))
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["row_number", "reason", "phone", "email", "first_name", "age_band"]
    by_line = {int(r[0]): r for r in rows[1:]}
    assert by_line[6][1] == "empty"
    assert by_line[8][1] == "invalid_phone"
    assert by_line[8][2] == "'=HYPERLINK(1)"  # defused formula
    assert by_line[9][1] == "malformed_row"
    # a leading + is escaped too: Excel would compute "+1650-555" as a formula
    assert by_line[9][2:] == ["'+16505550100", "dee@example.com", "Dee", "45-54", "extra"]


async def test_reimport_counts_list_duplicates_and_never_resurrects_suppressed(
    client: TestClient, key: str, settings: Settings
) -> None:
    list_id = await _new_list(client, key)
    first = await (await _upload(client, key, list_id, CSV.encode())).json()
    await _finished(client, key, settings, first["id"])
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as session:
        workspace_id = await session.scalar(sa.select(Contact.workspace_id).limit(1))
        session.add(
            Suppression(workspace_id=workspace_id, channel="sms", address="+14155559999", reason="stop")
        )
        session.add(
            Suppression(workspace_id=workspace_id, channel="all", address="eve@example.com", reason="manual")
        )
    await engine.dispose()
    again = "phone,email\n+14155552671,\n+1 415 555 9999,\n,eve@example.com\n+14155550123,\n"
    second = await (await _upload(client, key, list_id, again.encode())).json()
    job = await _finished(client, key, settings, second["id"])
    assert (job["accepted"], job["duplicate"], job["suppressed"], job["rejected"]) == (1, 1, 2, 0)
    assert job["reasons"] == {"duplicate_on_list": 1, "suppressed": 2}
    _check_buckets(job)
    assert await _count(settings, Contact, Contact.list_id == list_id) == 4


async def test_dry_run_reports_and_writes_nothing(client: TestClient, key: str, settings: Settings) -> None:
    list_id = await _new_list(client, key)
    started = await (await _upload(client, key, list_id, CSV.encode(), "?dry_run=true")).json()
    job = await _finished(client, key, settings, started["id"])
    assert job["state"] == "completed"
    assert job["dry_run"] is True
    assert (job["accepted"], job["rejected"], job["duplicate"]) == (3, 4, 1)
    assert await _count(settings, Contact) == 0
    assert await _count(settings, StagedContact) == 0
    assert await _count(settings, ConsentRecord) == 0


async def test_multipart_upload_with_form_options(client: TestClient, key: str, settings: Settings) -> None:
    list_id = await _new_list(client, key, default_region="GB")
    form = aiohttp.FormData()
    form.add_field("default_region", "US")
    form.add_field("file", b"phone\n(415) 555-2671\n", filename="contacts.csv", content_type="text/csv")
    response = await client.post(f"/v1/lists/{list_id}/imports", data=form, headers=bearer(key))
    started = await response.json()
    assert response.status == 202, started
    assert started["filename"] == "contacts.csv"
    job = await _finished(client, key, settings, started["id"])
    assert job["accepted"] == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty file"),
        (b"name,age\nann,3\n", "no phone or email column"),
        (b"phone,phone\n1,2\n", "duplicate column"),
        (bytes(range(256)) * 50, ""),
    ],
)
async def test_hopeless_files_get_422_and_leave_nothing(
    client: TestClient, key: str, settings: Settings, body: bytes, fragment: str
) -> None:
    list_id = await _new_list(client, key)
    response = await _upload(client, key, list_id, body)
    error = (await response.json())["error"]
    assert response.status == 422, error
    assert error["code"] == "invalid_csv"
    assert fragment in error["message"]
    assert await _count(settings, ImportChunk) == 0
    from dispatcher.storage.models import ContactImport

    assert await _count(settings, ContactImport) == 0


async def test_oversize_upload_is_413_and_leaves_nothing(
    aiohttp_client: Any, settings: Settings, make_key: KeyMaker
) -> None:
    from dispatcher.api.app import create_app
    from dispatcher.storage.models import ContactImport

    client = await aiohttp_client(create_app(settings.with_overrides(max_upload_bytes=3 << 20)))
    key = await make_key()
    list_id = await _new_list(client, key)

    async def body():  # type: ignore[no-untyped-def]
        yield b"phone\n"
        for _ in range(60):
            yield b"+14155552671\n" * 5000

    response = await client.post(
        f"/v1/lists/{list_id}/imports", data=body(), headers={**bearer(key), "Content-Type": "text/csv"}
    )
    assert response.status == 413
    assert await _count(settings, ContactImport) == 0
    assert await _count(settings, ImportChunk) == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [("?default_region=USA", "default_region"), ("?channels=fax", "channels"), ("?dry_run=maybe", "dry_run")],
)
async def test_bad_options_are_422(client: TestClient, key: str, query: str, field: str) -> None:
    list_id = await _new_list(client, key)
    response = await _upload(client, key, list_id, b"phone\n1\n", query)
    body = await response.json()
    assert response.status == 422
    assert body["error"]["details"][0]["field"] == field


async def test_unknown_list_is_404(client: TestClient, key: str) -> None:
    response = await _upload(client, key, 999, b"phone\n1\n")
    assert response.status == 404


async def test_wrong_content_type_is_422(client: TestClient, key: str) -> None:
    list_id = await _new_list(client, key)
    response = await client.post(f"/v1/lists/{list_id}/imports", json={"x": 1}, headers=bearer(key))
    assert response.status == 422
    assert "text/csv" in (await response.json())["error"]["message"]
