"""Browsing and erasing contacts over HTTP, on SQLite and PostgreSQL, with imports run by a real worker."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine
from dispatcher.storage.models import Contact, Suppression
from tests.api.makers_lists import import_csv, seed_people
from tests.conftest import KeyMaker, bearer


@pytest.fixture
async def key(make_key: KeyMaker) -> str:
    return await make_key()


async def _names(client: TestClient, key: str, list_id: int, query: str = "") -> list[str]:
    response = await client.get(f"/v1/lists/{list_id}/contacts?limit=500&{query}", headers=bearer(key))
    body = await response.json()
    assert response.status == 200, body
    return [item["first_name"] for item in body["items"]]


FILTERS = [
    ("", ["Ann", "Bob", "Cy", "Dee", "Eve", "Fritz", "Gil"]),
    ("sms_capable=true", ["Ann", "Bob", "Cy", "Gil"]),
    ("sms_capable=false&has_phone=true", ["Dee", "Fritz"]),
    ("has_email=false", ["Bob", "Fritz"]),
    ("has_phone=false", ["Eve"]),
    ("phone_region=us", ["Ann", "Bob"]),
    ("attr.level=gold", ["Ann", "Cy", "Gil"]),
    ("attr.level=gold&attr.level=silver", ["Ann", "Bob", "Cy", "Fritz", "Gil"]),
    ("attr.age_band=25-34&sms_capable=true&phone_region=FR", ["Cy"]),
    ("attr.level=platinum", []),
    ("attr.nonexistent=x", []),
    ("q=an", ["Ann"]),
    ("q=AN", ["Ann"]),
    ("q=%2B1415", ["Ann", "Bob"]),  # +1415
    ("q=1 415-555", ["Ann", "Bob"]),
    ("q=3361", ["Cy"]),
    ("q=sto", ["Eve"]),  # last name
    ("q=gil@", ["Gil"]),
    ("q=example.com", []),  # a prefix, not a substring
    ("q=%25", []),  # a literal %, not a wildcard
    ("q=_", []),
]


async def test_filters_fields_and_pages(client: TestClient, key: str) -> None:
    list_id, ids = await seed_people(client, key)
    for query, expected in FILTERS:
        assert await _names(client, key, list_id, query) == expected, query
    await _check_fields(client, key, list_id, ids)
    await _check_pages(client, key, list_id, ids)


async def _check_fields(client: TestClient, key: str, list_id: int, ids: dict[str, int]) -> None:
    response = await client.get(f"/v1/contacts/{ids['Bob']}", headers=bearer(key))
    body = await response.json()
    assert response.status == 200
    assert body == {
        "id": ids["Bob"],
        "list_id": list_id,
        "phone": "+14155552672",
        "phone_type": "fixed_line_or_mobile",
        "phone_region": "US",
        "time_zones": ["America/Los_Angeles"],
        "sms_capable": True,
        "email": None,
        "first_name": "Bob",
        "last_name": "Kim",
        "timezone": "America/New_York",
        "attributes": {"age_band": "35-44", "level": "silver", "spend": "80.5", "joined": "2023-06-01"},
        "created_at": body["created_at"],
    }


async def _check_pages(client: TestClient, key: str, list_id: int, ids: dict[str, int]) -> None:
    """Pages of 3 visit every contact once, in id order."""
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        response = await client.get(f"/v1/lists/{list_id}/contacts?limit=3{cursor}", headers=bearer(key))
        body = await response.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == sorted(ids.values())
    assert pages == 3


async def test_segment_filter(client: TestClient, key: str) -> None:
    list_id, _ = await seed_people(client, key)
    response = await client.post(
        f"/v1/lists/{list_id}/segments",
        json={
            "name": "spenders",
            "filter": {"field": "attributes.spend", "op": "range", "value": {"gte": 50}},
        },
        headers=bearer(key),
    )
    segment_id = (await response.json())["id"]
    assert await _names(client, key, list_id, f"segment_id={segment_id}") == ["Ann", "Bob", "Fritz"]
    assert await _names(client, key, list_id, f"segment_id={segment_id}&sms_capable=true") == ["Ann", "Bob"]
    other = await client.post("/v1/lists", json={"name": "other"}, headers=bearer(key))
    other_id = (await other.json())["id"]
    for query in (f"segment_id={segment_id}", "segment_id=999999"):
        response = await client.get(f"/v1/lists/{other_id}/contacts?{query}", headers=bearer(key))
        body = await response.json()
        assert response.status == 422, body
        assert body["error"]["details"][0]["field"] == "segment_id"


BAD_QUERIES = [
    ("unknown=1", "unknown"),
    ("sms_capable=maybe", "sms_capable"),
    ("phone_region=USA", "phone_region"),
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("cursor=abc", "cursor"),
    ("segment_id=0", "segment_id"),
    ("q=" + "x" * 101, "q"),
    ('attr.a"b=1', 'attr.a"b'),
    ("attr.=1", "attr."),
    ("attr.level=" + "x" * 501, "attr.level"),
]


async def test_bad_queries_are_422_naming_the_parameter(client: TestClient, key: str) -> None:
    response = await client.post("/v1/lists", json={"name": "empty"}, headers=bearer(key))
    list_id = (await response.json())["id"]
    for query, field in BAD_QUERIES:
        response = await client.get(
            f"/v1/lists/{list_id}/contacts", params=_params(query), headers=bearer(key)
        )
        body = await response.json()
        assert response.status == 422, (query, body)
        assert body["error"]["details"][0]["field"] == field, (query, body)
    assert (await client.get("/v1/lists/999999/contacts", headers=bearer(key))).status == 404
    assert (await client.get("/v1/contacts/999999", headers=bearer(key))).status == 404
    assert (await client.get("/v1/contacts/abc", headers=bearer(key))).status == 404


def _params(query: str) -> dict[str, str]:
    name, _, value = query.partition("=")
    return {name: value}


async def _row(settings: Settings, contact_id: int) -> Any:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(Contact).where(Contact.id == contact_id))).one()
    await engine.dispose()
    return row


async def _list_count(client: TestClient, key: str, list_id: int) -> int:
    body = await (await client.get(f"/v1/lists/{list_id}", headers=bearer(key))).json()
    return int(body["contact_count"])


async def test_erasure_scrubs_in_place(
    client: TestClient, key: str, settings: Settings, make_key: KeyMaker
) -> None:
    list_id, ids = await seed_people(client, key)
    ann = ids["Ann"]
    assert await _list_count(client, key, list_id) == 7
    reader = await make_key(scopes=("read",), name="reader")
    assert (await client.delete(f"/v1/contacts/{ann}", headers=bearer(reader))).status == 403
    assert (await client.get(f"/v1/contacts/{ann}", headers=bearer(reader))).status == 200
    response = await client.delete(f"/v1/contacts/{ann}", headers=bearer(key))
    assert response.status == 204
    assert (await client.get(f"/v1/contacts/{ann}", headers=bearer(key))).status == 404
    assert (await client.delete(f"/v1/contacts/{ann}", headers=bearer(key))).status == 404
    assert await _list_count(client, key, list_id) == 6  # decremented once, not twice
    assert "Ann" not in await _names(client, key, list_id)
    assert await _names(client, key, list_id, "q=ann") == []
    row = await _row(settings, ann)
    assert row.erased_at is not None
    assert row.dedupe_key == f"erased:{ann}"
    personal = (row.phone, row.email, row.first_name, row.last_name, row.timezone, row.phone_region)
    assert personal == (None,) * 6
    assert (row.attributes, row.time_zones, row.sms_capable) == ({}, [], False)
    # No suppression was added: Ann may sign up again, and a re-import brings her back as a new contact.
    assert (await (await client.get("/v1/suppressions", headers=bearer(key))).json())["items"] == []
    assert await _count_suppressions(settings) == 0
    job = await import_csv(client, key, list_id, "phone,email,first_name\n+14155552671,ann@example.com,Ann\n")
    assert (job["accepted"], job["duplicate"]) == (1, 0)
    assert await _list_count(client, key, list_id) == 7
    assert "Ann" in await _names(client, key, list_id)


async def _count_suppressions(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(sa.func.count()).select_from(Suppression))
    await engine.dispose()
    return int(value or 0)
