from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from dispatcher.api.app import build_registry, create_app
from dispatcher.settings import Settings


async def test_healthz(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_reports_database_and_redis(client: TestClient) -> None:
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 200, body
    assert body["database"] == "ok"
    assert body["redis"] == "ok"
    assert body["workers"] == 0


async def test_readyz_is_503_when_database_unreachable(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings
) -> None:
    broken = settings.with_overrides(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    client = await aiohttp_client(create_app(broken))
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["status"] == "unavailable"
    assert body["database"].startswith("error")
    assert body["redis"] == "ok"


async def test_api_answers_503_not_500_when_database_unreachable(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings
) -> None:
    broken = settings.with_overrides(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    client = await aiohttp_client(create_app(broken))
    response = await client.get("/v1/lists", headers={"Authorization": "Bearer dsp_0123456789ab_" + "x" * 40})
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "unavailable"


async def test_metrics_count_requests_by_route(client: TestClient) -> None:
    await client.get("/healthz")
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    line = next(
        row
        for row in text.splitlines()
        if row.startswith("dispatcher_http_requests_total") and "/healthz" in row
    )
    assert line.endswith(" 2.0")


async def test_openapi_describes_every_route_with_its_models(client: TestClient) -> None:
    doc = await (await client.get("/v1/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    registry = build_registry()
    for ep in registry.endpoints:
        operation = doc["paths"][ep.path][ep.method.lower()]
        assert operation["operationId"] == ep.name
        if ep.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]
        if ep.scope is not None:
            assert "401" in operation["responses"]
            assert operation["security"] == [{"bearer": []}]
    region = doc["components"]["schemas"]["ListCreate"]["properties"]["default_region"]
    assert {"type": "string", "pattern": "^[A-Za-z]{2}$"} in region["anyOf"]


async def test_docs_page_lists_every_path(client: TestClient) -> None:
    response = await client.get("/v1/docs")
    page = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    for ep in build_registry().endpoints:
        assert ep.path in page
