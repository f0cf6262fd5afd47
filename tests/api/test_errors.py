"""Bad input always gets a JSON 4xx naming the problem, and nothing is written."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import KeyMaker, bearer


@pytest.fixture
async def key(make_key: KeyMaker) -> str:
    return await make_key()


async def _lists_count(client: TestClient, key: str) -> int:
    body = await (await client.get("/v1/lists", headers=bearer(key))).json()
    return len(body["items"])


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "malformed_body"),
        (b"", 400, "malformed_body"),
        (b"\xff\xfe\x00garbage", 400, "malformed_body"),
        (b"[1, 2, 3]", 422, "invalid_input"),
        (b'"just a string"', 422, "invalid_input"),
        (b'{"name": 12}', 422, "invalid_input"),
        (b'{"name": "x", "unknown_field": 1}', 422, "invalid_input"),
        (b'{"name": "x", "default_region": "USA"}', 422, "invalid_input"),
        (b'{"name": "x", "default_timezone": "Mars/Olympus"}', 422, "invalid_input"),
        (b'{"name": "' + b"x" * 500 + b'"}', 422, "invalid_input"),
        (b'{"name": 1e999}', 422, "invalid_input"),
        (b'{"name": ' + b"9" * 5000 + b"}", 400, "malformed_body"),
        (b'{"name": null}', 422, "invalid_input"),
    ],
)
async def test_bad_bodies_get_clear_4xx_and_write_nothing(
    client: TestClient, key: str, raw: bytes, status: int, code: str
) -> None:
    response = await client.post(
        "/v1/lists", data=raw, headers={**bearer(key), "Content-Type": "application/json"}
    )
    body = await response.json()
    assert response.status == status, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert await _lists_count(client, key) == 0


async def test_validation_errors_name_the_fields(client: TestClient, key: str) -> None:
    response = await client.post("/v1/lists", json={"name": "", "default_region": "1"}, headers=bearer(key))
    body = await response.json()
    assert response.status == 422
    assert {d["field"] for d in body["error"]["details"]} == {"name", "default_region"}


async def test_oversize_body_is_413(client: TestClient, key: str) -> None:
    big = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    response = await client.post(
        "/v1/lists", data=big, headers={**bearer(key), "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_oversize_chunked_body_is_413(client: TestClient, key: str) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = await client.post(
        "/v1/lists", data=chunks(), headers={**bearer(key), "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert await _lists_count(client, key) == 0


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nowhere", 404, "not_found"),
        ("PATCH", "/v1/lists", 405, "method_not_allowed"),
        ("GET", "/v1/lists/abc", 404, "not_found"),
        ("GET", "/v1/lists/0", 404, "not_found"),
        ("GET", "/v1/lists/99999999999999999999999", 404, "not_found"),
        ("GET", "/v1/lists?limit=0", 422, "invalid_input"),
        ("GET", "/v1/lists?limit=abc", 422, "invalid_input"),
        ("GET", "/v1/lists?cursor=';drop", 422, "invalid_input"),
        ("GET", "/v1/lists?bogus=1", 422, "invalid_input"),
    ],
)
async def test_routing_and_query_errors_are_json(
    client: TestClient, key: str, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path, headers=bearer(key))
    assert response.status == status
    assert (await response.json())["error"]["code"] == code
