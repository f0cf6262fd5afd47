"""Isolation makers for the template endpoints (``template_id``, ``version``)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.makers_core import Maker
from tests.conftest import bearer


async def make_template(client: TestClient, key: str) -> int:
    body = {"name": "secret template of A", "channel": "sms", "body": "secret offer. Reply STOP to opt out"}
    response = await client.post("/v1/templates", json=body, headers=bearer(key))
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def make_version(client: TestClient, key: str) -> int:
    return 1  # every template has version 1; B must still get 404 for A's template


MAKERS: dict[str, Maker] = {"template_id": make_template, "version": make_version}
SAMPLE_BODIES: dict[str, Any] = {
    "/v1/templates": {"name": "from B", "channel": "sms", "body": "B offer. Reply STOP to opt out"},
    "/v1/templates/{template_id}": {"body": "B edit. Reply STOP to opt out"},
    "/v1/templates/{template_id}/preview": {"variables": {}},
}
