"""API keys exist only as hashes at rest, and one workspace's key never reaches another's data.

``tests/api/test_isolation.py`` proves every endpoint with a path id answers 404 across workspaces. This
adds what it does not cover: ids of another workspace *inside request bodies and query strings* (a
campaign built from someone else's list, template, segment or provider; a report filtered on someone
else's campaign), and that B's refused writes left A's resources byte for byte as they were.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS
from dispatcher.storage.accounts import ApiKey
from dispatcher.storage.campaigns import Campaign
from tests import inbound_seed
from tests.api.makers_campaigns import make_campaign, make_provider, make_provider_named, make_sms_template
from tests.api.makers_core import make_list
from tests.api.makers_lists import make_contact, make_segment, make_suppression
from tests.conftest import KeyMaker, bearer


async def _key_rows(client: TestClient) -> list[dict[str, Any]]:
    async with client.app[SESSIONS]() as session:
        rows = (await session.execute(sa.select(ApiKey.__table__))).mappings().all()
    return [dict(row) for row in rows]


async def test_api_keys_are_stored_only_as_hashes(client: TestClient, make_key: KeyMaker) -> None:
    admin = await make_key()
    response = await client.post(
        "/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=bearer(admin)
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    tokens = [admin, created["key"]]
    rows = await _key_rows(client)
    assert len(rows) == 2
    for token in tokens:
        secret = token.split("_", 2)[2]
        for row in rows:
            for column, value in row.items():
                assert secret not in str(value), f"the key's secret is stored in api_keys.{column}"
        assert hashlib.sha256(token.encode()).hexdigest() in {row["key_hash"] for row in rows}
    listing = await (await client.get("/v1/api-keys", headers=bearer(admin))).text()
    for token in tokens:
        assert token.split("_", 2)[2] not in listing
    assert all(row["key_hash"] not in listing for row in rows)
    # the hash itself is no key
    response = await client.get("/v1/lists", headers=bearer(rows[0]["key_hash"]))
    assert response.status == 401


async def _campaign_body(client: TestClient, key: str, **ids: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "B's campaign",
        "channel": "sms",
        "list_id": await make_list(client, key),
        "template_id": await make_sms_template(client, key, f"B template {len(ids)} {sorted(ids)}"),
        "provider_id": await make_provider_named(client, key, f"B provider {sorted(ids)}"),
    }
    body.update(ids)
    if "segment_id" in ids:
        del body["list_id"]
    if "variants" in ids:
        del body["template_id"]
    return body


async def test_bodies_cannot_name_another_workspaces_resources(
    client: TestClient, make_key: KeyMaker
) -> None:
    key_a, key_b = await make_key("brand-a"), await make_key("brand-b")
    theirs = {
        "list_id": await make_list(client, key_a),
        "template_id": await make_sms_template(client, key_a, "A template"),
        "provider_id": await make_provider(client, key_a),
        "segment_id": await make_segment(client, key_a),
    }
    own = await client.post("/v1/campaigns", json=await _campaign_body(client, key_b), headers=bearer(key_b))
    assert own.status == 201, await own.text()  # the body is fine with B's own ids
    own_id = (await own.json())["id"]
    for field, value in theirs.items():
        body = await _campaign_body(client, key_b, **{field: value})
        response = await client.post("/v1/campaigns", json=body, headers=bearer(key_b))
        assert response.status in {404, 422}, (field, response.status, await response.text())
        update = {field: value} if field != "segment_id" else {"segment_id": value, "list_id": None}
        response = await client.put(f"/v1/campaigns/{own_id}", json=update, headers=bearer(key_b))
        assert response.status in {404, 422}, (field, response.status, await response.text())
    variants = {"variants": [{"template_id": theirs["template_id"], "weight": 1}]}
    body = await _campaign_body(client, key_b, variants=0)
    body.update(variants)
    response = await client.post("/v1/campaigns", json=body, headers=bearer(key_b))
    assert response.status in {404, 422}, await response.text()
    campaigns = await (await client.get("/v1/campaigns", headers=bearer(key_b))).json()
    assert [c["id"] for c in campaigns["items"]] == [own_id]


async def test_query_strings_cannot_reach_another_workspace(client: TestClient, make_key: KeyMaker) -> None:
    key_a, key_b = await make_key("brand-a"), await make_key("brand-b")
    async with client.app[SESSIONS].begin() as session:
        made = await inbound_seed.seed(session, count=2, slug="brand-a")
        await session.execute(
            sa.update(Campaign).where(Campaign.id == made.campaign_id).values(name="secret A campaign")
        )
    campaign_a = made.campaign_id
    seen = await client.get(f"/v1/reports?campaign_id={campaign_a}", headers=bearer(key_a))
    assert "secret A campaign" in await seen.text()  # A sees it: the probe below can fail
    for path in [
        f"/v1/reports?campaign_id={campaign_a}",
        f"/v1/reports?campaign_id={campaign_a}&format=csv",
        f"/v1/reports?campaign_id={campaign_a}&group_by=campaign",
        f"/v1/reports.html?campaign_id={campaign_a}",
        f"/v1/reports/campaigns/{campaign_a}",
        f"/v1/campaigns/{campaign_a}/spread",
    ]:
        response = await client.get(path, headers=bearer(key_b))
        text = await response.text()
        assert response.status in {200, 404, 422}, (path, text)
        assert "secret" not in text, path


async def _snapshot(client: TestClient, key: str, paths: list[str]) -> dict[str, Any]:
    return {path: await (await client.get(path, headers=bearer(key))).json() for path in paths}


async def test_refused_writes_leave_the_other_workspace_untouched(
    client: TestClient, make_key: KeyMaker
) -> None:
    key_a, key_b = await make_key("brand-a"), await make_key("brand-b")
    ids = {
        "lists": await make_list(client, key_a),
        "templates": await make_sms_template(client, key_a, "A template"),
        "providers": await make_provider(client, key_a),
        "contacts": await make_contact(client, key_a),
        "segments": await make_segment(client, key_a),
        "suppressions": await make_suppression(client, key_a),
        "campaigns": await make_campaign(client, key_a),
    }
    paths = [f"/v1/{kind}/{id_}" for kind, id_ in ids.items()]
    before = await _snapshot(client, key_a, paths)
    writes = {
        "lists": {"name": "B was here"},
        "templates": {"body": "B was here. Reply STOP to opt out"},
        "providers": {"enabled": False, "name": "B was here"},
        "contacts": {"first_name": "B was here"},
        "segments": {"name": "B was here"},
        "suppressions": {"reason": "manual"},
        "campaigns": {"name": "B was here"},
    }
    for kind, id_ in ids.items():
        for method in ("PUT", "DELETE"):
            body = writes[kind] if method != "DELETE" else None
            response = await client.request(method, f"/v1/{kind}/{id_}", json=body, headers=bearer(key_b))
            assert response.status in {404, 405}, (method, kind, response.status)
    after = await _snapshot(client, key_a, paths)
    assert after == before
    assert all("error" not in found for found in after.values()), after
