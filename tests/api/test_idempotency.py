from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from tests.conftest import KeyMaker, bearer


async def test_retry_with_same_key_returns_first_reply(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    headers = {**bearer(key), "Idempotency-Key": "abc-1"}
    first = await client.post("/v1/lists", json={"name": "Spring"}, headers=headers)
    second = await client.post("/v1/lists", json={"name": "Spring"}, headers=headers)
    assert first.status == second.status == 201
    assert (await first.json())["id"] == (await second.json())["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    listing = await (await client.get("/v1/lists", headers=bearer(key))).json()
    assert len(listing["items"]) == 1


async def test_same_key_with_other_body_is_409(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    headers = {**bearer(key), "Idempotency-Key": "abc-2"}
    assert (await client.post("/v1/lists", json={"name": "Spring"}, headers=headers)).status == 201
    clash = await client.post("/v1/lists", json={"name": "Autumn"}, headers=headers)
    assert clash.status == 409
    assert (await clash.json())["error"]["code"] == "conflict"


async def test_keys_are_per_workspace(client: TestClient, make_key: KeyMaker) -> None:
    key_a, key_b = await make_key("a"), await make_key("b")
    for key in (key_a, key_b):
        response = await client.post(
            "/v1/lists", json={"name": "x"}, headers={**bearer(key), "Idempotency-Key": "k"}
        )
        assert response.status == 201
    for key in (key_a, key_b):
        listing = await (await client.get("/v1/lists", headers=bearer(key))).json()
        assert len(listing["items"]) == 1


async def test_concurrent_retries_create_one_row(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    headers = {**bearer(key), "Idempotency-Key": "race"}
    replies = await asyncio.gather(
        *(client.post("/v1/lists", json={"name": "Race"}, headers=headers) for _ in range(6))
    )
    ids = {(await r.json())["id"] for r in replies if r.status == 201}
    assert len(ids) == 1
    assert all(r.status in {201, 503} for r in replies)
    listing = await (await client.get("/v1/lists", headers=bearer(key))).json()
    assert len(listing["items"]) == 1


async def test_pagination_walks_every_item_once(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    for i in range(7):
        assert (await client.post("/v1/lists", json={"name": f"L{i}"}, headers=bearer(key))).status == 201
    seen: list[str] = []
    cursor = ""
    while True:
        page = await (await client.get(f"/v1/lists?limit=3{cursor}", headers=bearer(key))).json()
        seen += [item["name"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == [f"L{i}" for i in range(7)]
