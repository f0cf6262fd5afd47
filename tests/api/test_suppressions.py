"""The suppression API over HTTP on SQLite and PostgreSQL, and its interplay with imports."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.makers_lists import import_csv
from tests.conftest import KeyMaker, bearer


@pytest.fixture
async def key(make_key: KeyMaker) -> str:
    return await make_key()


async def _suppress(client: TestClient, key: str, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/suppressions", json=body, headers=bearer(key))
    return response.status, await response.json()


async def _page(client: TestClient, key: str, query: str = "") -> list[dict[str, Any]]:
    response = await client.get(f"/v1/suppressions?{query}", headers=bearer(key))
    body = await response.json()
    assert response.status == 200, body
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_addresses_are_normalised_and_suppressing_twice_is_harmless(
    client: TestClient, key: str
) -> None:
    status, first = await _suppress(
        client, key, channel="sms", address="+1 (415) 555-2671", reason="stop", source="sms reply"
    )
    assert status == 201, first
    assert (first["channel"], first["address"], first["reason"], first["source"]) == (
        "sms",
        "+14155552671",
        "stop",
        "sms reply",
    )
    # the same number written nationally, with a region: the existing entry, unchanged, with 200
    status, again = await _suppress(
        client, key, channel="sms", address="415.555.2671", default_region="us", reason="manual"
    )
    assert (status, again) == (200, first)
    status, email = await _suppress(
        client, key, channel="email", address=" Ann@Example.COM ", reason="complaint"
    )
    assert (status, email["address"]) == (201, "Ann@example.com")
    status, everywhere = await _suppress(
        client, key, channel="all", address="bob@example.org", reason="unsubscribe"
    )
    assert (status, everywhere["address"]) == (201, "bob@example.org")
    status, all_phone = await _suppress(
        client, key, channel="all", address="0033 6 12 34 56 78", reason="manual"
    )
    assert (status, all_phone["address"]) == (201, "+33612345678")
    # a different channel is a different suppression
    status, _ = await _suppress(client, key, channel="all", address="+14155552671", reason="manual")
    assert status == 201
    one = await (await client.get(f"/v1/suppressions/{first['id']}", headers=bearer(key))).json()
    assert one == first
    assert len(await _page(client, key)) == 5


async def test_filters_pages_and_delete(client: TestClient, key: str) -> None:
    made = []
    for address, channel, reason in [
        ("+14155552671", "sms", "stop"),
        ("+14155552672", "sms", "hard_bounce"),
        ("a@example.com", "email", "hard_bounce"),
        ("b@example.com", "email", "unsubscribe"),
        ("+14155552671", "all", "manual"),
    ]:
        status, body = await _suppress(client, key, channel=channel, address=address, reason=reason)
        assert status == 201
        made.append(body["id"])
    assert [s["id"] for s in await _page(client, key, "channel=sms")] == made[:2]
    assert [s["id"] for s in await _page(client, key, "reason=hard_bounce")] == made[1:3]
    assert [s["id"] for s in await _page(client, key, "address=%2B1 415 555 2671")] == [made[0], made[4]]
    assert [s["id"] for s in await _page(client, key, "address=a@EXAMPLE.com")] == [made[2]]
    assert [s["id"] for s in await _page(client, key, "channel=email&reason=unsubscribe")] == [made[3]]
    assert await _page(client, key, "address=nobody") == []
    first = await (await client.get("/v1/suppressions?limit=2", headers=bearer(key))).json()
    assert ([s["id"] for s in first["items"]], first["next_cursor"]) == (made[:2], str(made[1]))
    rest = await _page(client, key, f"limit=2&cursor={made[1]}")
    assert [s["id"] for s in rest] == made[2:4]
    assert (await client.delete(f"/v1/suppressions/{made[0]}", headers=bearer(key))).status == 204
    assert (await client.get(f"/v1/suppressions/{made[0]}", headers=bearer(key))).status == 404
    assert (await client.delete(f"/v1/suppressions/{made[0]}", headers=bearer(key))).status == 404
    assert [s["id"] for s in await _page(client, key)] == made[1:]
    # removed, it can be suppressed again: a new entry
    status, body = await _suppress(client, key, channel="sms", address="+14155552671", reason="stop")
    assert status == 201
    assert body["id"] not in made


INVALID = [
    ({"channel": "fax", "address": "+14155552671", "reason": "manual"}, "channel"),
    ({"channel": "sms", "address": "+14155552671", "reason": "because"}, "reason"),
    ({"channel": "sms", "address": "12", "reason": "manual"}, "address"),
    ({"channel": "sms", "address": "4155552671", "reason": "manual"}, "address"),  # no +CC, no region
    ({"channel": "sms", "address": "ann@example.com", "reason": "manual"}, "address"),
    ({"channel": "email", "address": "not-an-email", "reason": "manual"}, "address"),
    ({"channel": "email", "address": "", "reason": "manual"}, "address"),
    ({"channel": "all", "address": "12", "reason": "manual"}, "address"),
    (
        {"channel": "sms", "address": "+14155552671", "reason": "manual", "default_region": "USA"},
        "default_region",
    ),
    ({"channel": "sms", "address": "+14155552671", "reason": "manual", "note": "x"}, "note"),
    ({"address": "+14155552671", "reason": "manual"}, "channel"),
]


async def test_invalid_bodies_are_422_naming_the_field(client: TestClient, key: str) -> None:
    for body, field in INVALID:
        status, reply = await _suppress(client, key, **body)
        assert status == 422, (body, reply)
        assert reply["error"]["details"][0]["field"] == field, (body, reply)
    assert await _page(client, key) == []
    for query in ("channel=fax", "reason=x", "limit=0", "extra=1"):
        response = await client.get(f"/v1/suppressions?{query}", headers=bearer(key))
        assert response.status == 422, query
    assert (await client.get("/v1/suppressions/999999", headers=bearer(key))).status == 404


async def test_idempotency_key_replays_the_creation(client: TestClient, key: str) -> None:
    body = {"channel": "email", "address": "c@example.com", "reason": "manual"}
    headers = {**bearer(key), "Idempotency-Key": "sup-1"}
    first = await client.post("/v1/suppressions", json=body, headers=headers)
    replay = await client.post("/v1/suppressions", json=body, headers=headers)
    assert (first.status, replay.status) == (201, 201)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert await first.json() == await replay.json()
    # a new key for an address already suppressed: the existing entry with 200, nothing stored twice
    again = await client.post(
        "/v1/suppressions", json=body, headers={**bearer(key), "Idempotency-Key": "sup-2"}
    )
    assert again.status == 200
    assert (await again.json())["id"] == (await first.json())["id"]
    assert len(await _page(client, key)) == 1


async def test_reimport_never_removes_a_suppression(client: TestClient, key: str) -> None:
    list_id = (await (await client.post("/v1/lists", json={"name": "L"}, headers=bearer(key))).json())["id"]
    status, phone = await _suppress(client, key, channel="sms", address="+14155552671", reason="stop")
    assert status == 201
    status, email = await _suppress(
        client, key, channel="all", address="eve@example.com", reason="unsubscribe"
    )
    assert status == 201
    status, cy_phone = await _suppress(client, key, channel="sms", address="+14155552674", reason="stop")
    assert status == 201
    csv_text = (
        "phone,email,first_name\n"
        "+14155552671,,Ann\n"  # suppressed on its only channel
        ",eve@example.com,Eve\n"  # suppressed on "all"
        "+14155552674,cy@example.com,Cy\n"  # e-mail still usable: kept, the send-time check skips the phone
        "+14155552673,,Dan\n"
    )
    for _ in range(2):  # importing twice changes nothing about the suppressions
        job = await import_csv(client, key, list_id, csv_text)
        assert job["suppressed"] == 2, job
        assert [s["id"] for s in await _page(client, key)] == [phone["id"], email["id"], cy_phone["id"]]
    page = await (await client.get(f"/v1/lists/{list_id}/contacts", headers=bearer(key))).json()
    assert [c["first_name"] for c in page["items"]] == ["Cy", "Dan"]
