from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from dispatcher.api.app import create_app
from dispatcher.settings import Settings
from tests.conftest import KeyMaker, bearer


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic abc",
        "Bearer nope",
        "Bearer dsp_short_x",
        "Bearer dsp_0123456789ab_" + "a" * 43,
    ],
)
async def test_missing_or_unknown_keys_are_401(client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get("/v1/lists", headers=headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_key_with_tampered_secret_is_401(client: TestClient, make_key: KeyMaker) -> None:
    token = await make_key()
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await client.get("/v1/lists", headers=bearer(tampered))).status == 401
    assert (await client.get("/v1/lists", headers=bearer(token))).status == 200


@pytest.mark.parametrize(
    ("scopes", "method", "path", "status"),
    [
        (("read",), "GET", "/v1/lists", 200),
        (("read",), "POST", "/v1/lists", 403),
        (("write",), "POST", "/v1/lists", 201),
        (("send",), "GET", "/v1/lists", 200),
        (("send",), "GET", "/v1/api-keys", 403),
        (("admin",), "GET", "/v1/api-keys", 200),
    ],
)
async def test_scopes(
    client: TestClient, make_key: KeyMaker, scopes: tuple[str, ...], method: str, path: str, status: int
) -> None:
    token = await make_key(scopes=scopes)
    response = await client.request(
        method, path, json={"name": "n"} if method == "POST" else None, headers=bearer(token)
    )
    assert response.status == status


async def test_created_key_is_shown_once_and_works_until_revoked(
    client: TestClient, make_key: KeyMaker
) -> None:
    admin = await make_key()
    created = await client.post(
        "/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=bearer(admin)
    )
    body = await created.json()
    assert created.status == 201
    assert body["scopes"] == ["read"]
    new_key = body["key"]
    listing = await (await client.get("/v1/api-keys", headers=bearer(admin))).json()
    assert new_key not in str(listing)
    assert {item["prefix"] for item in listing["items"]} >= {new_key.split("_")[1]}
    assert (await client.get("/v1/workspace", headers=bearer(new_key))).status == 200
    assert (await client.delete(f"/v1/api-keys/{body['id']}", headers=bearer(admin))).status == 204
    assert (await client.get("/v1/workspace", headers=bearer(new_key))).status == 401
    assert (await client.delete(f"/v1/api-keys/{body['id']}", headers=bearer(admin))).status == 404


async def test_only_the_hash_of_a_key_is_stored(
    client: TestClient, make_key: KeyMaker, settings: Settings
) -> None:
    import sqlalchemy as sa

    from dispatcher.storage.engine import create_engine

    token = await make_key()
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM api_keys"))).all()
    await engine.dispose()
    dumped = repr(rows)
    assert token not in dumped
    secret = token.split("_", 2)[2]  # dsp_<hex prefix>_<urlsafe secret, which may hold "_" itself>
    assert len(secret) >= 40
    assert secret not in dumped


async def test_rate_limit_answers_429_with_retry_after(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings, make_key: KeyMaker
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(api_rate_limit_per_s=3)))
    token = await make_key()
    statuses = [(await client.get("/v1/lists", headers=bearer(token))).status for _ in range(8)]
    assert 429 in statuses
    assert statuses[:3] == [200, 200, 200]
    limited = await client.get("/v1/lists", headers=bearer(token))
    if limited.status == 429:
        assert limited.headers["Retry-After"] == "1"
