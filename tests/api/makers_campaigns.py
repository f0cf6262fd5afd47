"""Isolation makers for providers and campaigns (``provider_id``, ``campaign_id``).

``POST /v1/campaigns`` needs an audience in the caller's own workspace, so its sample body cannot be a
constant: :func:`make_campaign` also gives workspace B (the isolation test's ``brand-b``) a list and a
template of its own and fills :data:`_B_CAMPAIGN` in place before the test sends it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS
from dispatcher.ops.auth import create_key
from tests.api.makers_core import Maker, make_list
from tests.api.makers_lists import import_csv
from tests.conftest import bearer

B_WORKSPACE = "brand-b"  # the slug tests/api/test_isolation.py gives workspace B


def provider_body(name: str, token: str = "secret-token-of-A") -> dict[str, Any]:
    return {
        "name": name,
        "channel": "sms",
        "kind": "twilio_http",
        "config": {
            "base_url": "http://127.0.0.1:9",
            "account_sid": "AC-test",
            "auth_token": token,
            "from": ["+15005550006"],
        },
        "price_per_segment": "0.0075",
    }


async def make_provider(client: TestClient, key: str) -> int:
    response = await client.post(
        "/v1/providers", json=provider_body("secret provider of A"), headers=bearer(key)
    )
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def make_sms_template(client: TestClient, key: str, name: str) -> int:
    body = {
        "name": name,
        "channel": "sms",
        "body": "Hi {{ first_name }}, 20% off today. Reply STOP to opt out",
    }
    response = await client.post("/v1/templates", json=body, headers=bearer(key))
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def _key_of_b(client: TestClient) -> str:
    async with client.app[SESSIONS].begin() as session:
        made = await create_key(
            session,
            workspace_slug=B_WORKSPACE,
            name="campaign maker",
            scopes=("admin",),
            now=datetime.now(UTC),
        )
    return made.token


async def make_campaign(client: TestClient, key: str) -> int:
    body = {
        "name": "secret campaign of A",
        "channel": "sms",
        "list_id": await make_list(client, key),
        "template_id": await make_sms_template(client, key, "secret campaign template"),
        "provider_id": await make_provider_named(client, key, "secret campaign provider"),
    }
    response = await client.post("/v1/campaigns", json=body, headers=bearer(key))
    assert response.status == 201, await response.text()
    key_b = await _key_of_b(client)
    list_b = await client.post("/v1/lists", json={"name": "list of B"}, headers=bearer(key_b))
    _B_CAMPAIGN.update(
        name="from B",
        channel="sms",
        list_id=int((await list_b.json())["id"]),
        template_id=await make_sms_template(client, key_b, "template of B"),
    )
    return int((await response.json())["id"])


async def make_provider_named(client: TestClient, key: str, name: str) -> int:
    response = await client.post("/v1/providers", json=provider_body(name), headers=bearer(key))
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


_B_CAMPAIGN: dict[str, Any] = {}
MAKERS: dict[str, Maker] = {"provider_id": make_provider, "campaign_id": make_campaign}
SAMPLE_BODIES: dict[str, Any] = {
    "/v1/providers": provider_body("from B", token="token-of-B"),
    "/v1/providers/{provider_id}": {"enabled": False},
    "/v1/campaigns": _B_CAMPAIGN,
    "/v1/campaigns/{campaign_id}": {"name": "renamed by B"},
}


# Shared by the campaign tests: one recipient per case, in this order (contact ids ascend).
START_AT = "2030-01-14T00:00:00+00:00"  # a winter Monday: 19:00 in New York, 16:00 in LA, 15:00 in Anchorage
AUDIENCE_CSV = (
    "phone,email,first_name\n"
    "+12125550100,,Nina\n"  # New York
    "+14155550100,,Liam\n"  # Los Angeles
    "+19075550100,,Alma\n"  # Alaska: America/Adak and America/Anchorage
    ",eve@example.com,Eve\n"  # e-mail only: excluded from an SMS campaign
    "+12125550199,,Sam\n"  # suppressed after the import
)


async def seed_audience(client: TestClient, key: str, csv: str = AUDIENCE_CSV) -> tuple[int, dict[str, int]]:
    """A list holding ``csv`` (Sam's number suppressed for SMS); returns its id and contact ids by name."""
    response = await client.post(
        "/v1/lists", json={"name": "audience", "default_region": "US"}, headers=bearer(key)
    )
    list_id = int((await response.json())["id"])
    await import_csv(client, key, list_id, csv)
    suppression = {"channel": "sms", "address": "+12125550199", "reason": "manual"}
    assert (await client.post("/v1/suppressions", json=suppression, headers=bearer(key))).status == 201
    ids: dict[str, int] = {}
    cursor = None
    while True:
        query = f"?limit=500&cursor={cursor}" if cursor else "?limit=500"
        page = await (await client.get(f"/v1/lists/{list_id}/contacts{query}", headers=bearer(key))).json()
        ids.update({item["first_name"]: item["id"] for item in page["items"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return list_id, ids


async def new_campaign(client: TestClient, key: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "spring offer", "channel": "sms", "schedule": {"start_at": START_AT}}
    body.update(fields)
    response = await client.post("/v1/campaigns", json=body, headers=bearer(key))
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result
