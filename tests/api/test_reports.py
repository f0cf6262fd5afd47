"""Reports over HTTP: JSON, streamed CSV (formula-safe), HTML, validation, scopes and workspace isolation."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS
from dispatcher.storage.campaigns import Batch, Campaign, Message
from tests.conftest import KeyMaker, bearer
from tests.storage.report_seed import Seeded, seed


@pytest.fixture
async def seeded(client: TestClient, db_url: str) -> Seeded:
    return await seed(db_url)


@pytest.fixture
async def key(make_key: KeyMaker, seeded: Seeded) -> str:
    return await make_key("shop", ("read",))


async def _get(client: TestClient, key: str, path: str, status: int = 200) -> Any:
    response = await client.get(path, headers=bearer(key))
    assert response.status == status, await response.text()
    return await response.json()


async def _csv(client: TestClient, key: str, path: str) -> list[dict[str, str]]:
    response = await client.get(path, headers=bearer(key))
    assert response.status == 200, await response.text()
    assert response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers.get("Transfer-Encoding") == "chunked"  # streamed, not buffered
    return list(csv.DictReader(io.StringIO(await response.text())))


async def test_campaign_report_json(client: TestClient, key: str, seeded: Seeded) -> None:
    report = await _get(client, key, f"/v1/reports/campaigns/{seeded.spring}")
    assert report["campaign"] == {"id": seeded.spring, "name": "spring", "channel": "sms", "state": "running"}
    totals = report["totals"]
    assert (totals["messages"], totals["sent"], totals["delivered"], totals["responders"]) == (8, 6, 4, 3)
    assert totals["arrival_rate"] == 4 / 6
    assert totals["response_rate"] == 0.75
    assert (totals["machine_clickers"], totals["machine_openers"]) == (1, 1)
    assert totals["cost"] == "0.045000"
    assert totals["cost_per_conversion"] == "0.022500"
    assert totals["median_seconds_to_delivery"] == 25.0
    batches = {row["group"]["batch"]: row for row in report["batches"]}
    assert batches[f"P{seeded.spring}"]["group"]["batch_id"] == seeded.pilot
    assert (batches[f"P{seeded.spring}"]["arrival_rate"], batches[f"M{seeded.spring}"]["arrival_rate"]) == (
        2 / 3,
        2 / 3,
    )
    assert [(r["group"]["variant"], r["response_rate"]) for r in report["variants"]] == [
        ("A", 1.0),
        ("B", 0.5),
    ]
    assert [r["group"] for r in report["channels"]] == [{"channel": "sms"}]
    assert [(r["group"]["period"], r["sent"]) for r in report["timeline"]] == [
        ("2030-01-14", 3),
        ("2030-01-15", 3),
    ]
    assert report["failure_reasons"] == [{"code": "21211", "count": 1}, {"code": "30003", "count": 1}]


async def test_grouped_report_json(client: TestClient, key: str, seeded: Seeded) -> None:
    report = await _get(client, key, "/v1/reports?group_by=channel&period=day&tz=local")
    assert (report["group_by"], report["period"], report["tz"]) == (["channel"], "day", "local")
    assert report["totals"]["messages"] == 10  # workspace "other" is never counted
    rows = {(r["group"]["channel"], r["group"]["period"]): r["messages"] for r in report["rows"]}
    assert rows == {("sms", "2030-01-14"): 3, ("sms", "2030-01-15"): 5, ("email", "2030-01-15"): 1,
                    ("email", "2030-01-16"): 1}  # fmt: skip
    bounded = await _get(
        client, key, "/v1/reports?group_by=provider&from=2030-01-14T23:30:00Z&to=2030-01-15T23:30:00Z"
    )
    assert bounded["from"] == "2030-01-14T23:30:00Z"
    assert [(r["group"]["provider"], r["messages"]) for r in bounded["rows"]] == [("alpha", 6)]


async def test_grouped_report_by_every_dimension(client: TestClient, key: str, seeded: Seeded) -> None:
    path = f"/v1/reports?group_by=campaign,batch,channel,provider,sender,variant&campaign_id={seeded.spring}"
    report = await _get(client, key, path)
    assert sum(row["messages"] for row in report["rows"]) == report["totals"]["messages"] == 8
    first = report["rows"][0]["group"]
    assert set(first) == {
        "campaign_id", "campaign", "batch_id", "batch", "channel",
        "provider_id", "provider", "sender", "variant",
    }  # fmt: skip


async def test_csv_exports_are_formula_safe(client: TestClient, key: str, seeded: Seeded) -> None:
    async with client.app[SESSIONS].begin() as session:
        await session.execute(
            sa.update(Campaign).where(Campaign.id == seeded.spring).values(name="=HYPERLINK(1)")
        )
        await session.execute(sa.update(Batch).where(Batch.id == seeded.pilot).values(code="@SUM(A1)"))
        await session.execute(
            sa.update(Message).where(Message.error_code == "30003").values(error_code="-2+3")
        )
    rows = await _csv(client, key, "/v1/reports?group_by=campaign,sender&format=csv")
    spring = next(r for r in rows if r["campaign_id"] == str(seeded.spring))
    assert spring["campaign"] == "'=HYPERLINK(1)"
    assert spring["sender"] == "'+15005550006"
    assert (spring["messages"], spring["delivered"], spring["cost_per_delivered"]) == ("8", "4", "0.011250")
    assert spring["median_seconds_to_delivery"] == "25.0"
    records = await _csv(client, key, f"/v1/reports/campaigns/{seeded.spring}?format=csv")
    by_section = [(r["section"], r["key"], r["name"]) for r in records]
    assert ("batch", str(seeded.pilot), "'@SUM(A1)") in by_section
    assert ("failure_reason", "'-2+3", "") in by_section
    totals = records[0]
    assert (totals["section"], totals["messages"], totals["arrival_rate"]) == ("totals", "8", str(4 / 6))
    news = next(r for r in await _csv(client, key, "/v1/reports?format=csv") if r["campaign"] == "news")
    assert news["complaint_rate"] == "0.0"
    assert news["cost_per_conversion"] == ""  # no conversions: undefined, not zero


@pytest.mark.parametrize(
    "query",
    [
        "group_by=colour",
        "group_by=batch,batch",
        "group_by=",
        "period=year",
        "tz=mars",
        "from=2030-01-14T00:00:00",  # no zone: ambiguous
        "from=2030-01-15T00:00:00Z&to=2030-01-14T00:00:00Z",
        "campaign_id=0",
        "format=xlsx",
        "colour=blue",
    ],
)
async def test_bad_queries_are_422(client: TestClient, key: str, query: str) -> None:
    body = await _get(client, key, f"/v1/reports?{query}", status=422)
    assert body["error"]["code"] == "invalid_input"


async def test_other_workspaces_see_nothing(client: TestClient, make_key: KeyMaker, seeded: Seeded) -> None:
    other = await make_key("other", ("read",))
    for path in (f"/v1/reports/campaigns/{seeded.spring}", f"/v1/reports/campaigns/{seeded.spring}.html"):
        assert (await client.get(path, headers=bearer(other))).status == 404
    report = await _get(client, other, f"/v1/reports?group_by=campaign,batch&campaign_id={seeded.spring}")
    assert (report["totals"]["messages"], report["rows"]) == (0, [])
    own = await _get(client, other, "/v1/reports")
    assert [(r["group"]["campaign"], r["messages"], r["responders"]) for r in own["rows"]] == [
        ("secret of other", 1, 1)
    ]


async def test_reports_need_an_api_key(client: TestClient, seeded: Seeded) -> None:
    # every scope implies "read", so a key of this workspace is all a report needs
    for path in ("/v1/reports", f"/v1/reports/campaigns/{seeded.spring}", "/v1/reports.html"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers=bearer("dsp_unknown_key"))).status == 401


async def test_html_pages_embed_the_report(client: TestClient, key: str, seeded: Seeded) -> None:
    response = await client.get(f"/v1/reports/campaigns/{seeded.spring}.html", headers=bearer(key))
    page = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    assert '<main id="report" data-kind="campaign">' in page
    assert '"arrival_rate":0.6666666666666666' in page
    assert "<script src" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    overview = await client.get("/v1/reports.html?period=week&tz=local", headers=bearer(key))
    assert overview.status == 200
    assert "Per week, recipients&#x27; local time" in await overview.text()
    assert (await client.get("/v1/reports/campaigns/abc.html", headers=bearer(key))).status == 404
