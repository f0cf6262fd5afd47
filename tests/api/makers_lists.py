"""Isolation makers for contacts, segments and suppressions (see ``tests/api/makers_core.py``)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SETTINGS
from tests.api.makers_core import Maker, make_list
from tests.conftest import bearer
from tests.helpers import drain


async def make_contact(client: TestClient, key: str) -> int:
    list_id = await make_list(client, key)
    response = await client.post(
        f"/v1/lists/{list_id}/imports",
        data=b"phone,first_name,secret_level\n+14155550123,secret person,secret gold\n",
        headers={**bearer(key), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    await drain(client.app[SETTINGS])
    page = await (await client.get(f"/v1/lists/{list_id}/contacts", headers=bearer(key))).json()
    return int(page["items"][0]["id"])


async def make_segment(client: TestClient, key: str) -> int:
    list_id = await make_list(client, key)
    response = await client.post(
        f"/v1/lists/{list_id}/segments",
        json={"name": "secret segment", "filter": {"field": "attributes.secret", "op": "exists"}},
        headers=bearer(key),
    )
    assert response.status == 201
    return int((await response.json())["id"])


async def make_suppression(client: TestClient, key: str) -> int:
    response = await client.post(
        "/v1/suppressions",
        json={"channel": "email", "address": "secret@example.com", "reason": "manual", "source": "secret"},
        headers=bearer(key),
    )
    assert response.status == 201
    return int((await response.json())["id"])


MAKERS: dict[str, Maker] = {
    "contact_id": make_contact,
    "segment_id": make_segment,
    "suppression_id": make_suppression,
}
_SEGMENT = {"name": "from B", "filter": {"all": []}}
SAMPLE_BODIES: dict[str, Any] = {
    "/v1/suppressions": {"channel": "sms", "address": "+14155550199", "reason": "manual"},
    "/v1/lists/{list_id}/segments": _SEGMENT,
    "/v1/lists/{list_id}/segments/preview": {"filter": {"all": []}},
}


# Shared by the contact, segment and suppression tests: seven people, in this order (ids ascend).
PEOPLE_CSV = (
    "phone,email,first_name,last_name,timezone,age_band,level,spend,joined\n"
    "+14155552671,ann@example.com,Ann,Lee,,25-34,gold,120,2024-01-10\n"  # US, sms
    "+14155552672,,Bob,Kim,America/New_York,35-44,silver,80.5,2023-06-01\n"  # US, sms, own zone
    "+33612345678,cy@example.fr,Cy,Moreau,,25-34,gold,30,2024-03-15\n"  # FR mobile
    "+442079460000,dee@example.co.uk,Dee,Hart,,45-54,,abc,\n"  # GB fixed line; spend not a number
    ",eve@example.com,Eve,Stone,Asia/Tokyo,18-24,bronze,,2022-12-31\n"  # e-mail only
    "+493012345678,,Fritz,Bauer,,,silver,1e3,\n"  # DE fixed line; spend 1000
    "+61491570156,gil@example.com,Gil,Ng,,25-34,gold,25-34,2024-02-29\n"  # AU mobile; spend not a number
)
NAMES = ("Ann", "Bob", "Cy", "Dee", "Eve", "Fritz", "Gil")


async def import_csv(client: TestClient, key: str, list_id: int, text: str) -> dict[str, Any]:
    """Upload a CSV, run the import on a real worker, return the finished import."""
    response = await client.post(
        f"/v1/lists/{list_id}/imports",
        data=text.encode(),
        headers={**bearer(key), "Content-Type": "text/csv"},
    )
    assert response.status == 202, await response.text()
    await drain(client.app[SETTINGS])
    job: dict[str, Any] = await (
        await client.get(f"/v1/imports/{(await response.json())['id']}", headers=bearer(key))
    ).json()
    assert job["state"] == "completed", job
    return job


async def seed_people(client: TestClient, key: str) -> tuple[int, dict[str, int]]:
    """A list holding PEOPLE_CSV; returns its id and each person's contact id by first name."""
    response = await client.post(
        "/v1/lists", json={"name": "people", "default_region": "US"}, headers=bearer(key)
    )
    list_id = int((await response.json())["id"])
    job = await import_csv(client, key, list_id, PEOPLE_CSV)
    assert job["accepted"] == len(NAMES), job
    page = await (await client.get(f"/v1/lists/{list_id}/contacts", headers=bearer(key))).json()
    ids = {item["first_name"]: item["id"] for item in page["items"]}
    assert list(ids) == list(NAMES)
    return list_id, ids
