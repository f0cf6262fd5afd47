"""Isolation makers for the foundation's endpoints: each creates one resource in a workspace, returns its id.

``test_isolation`` merges every ``tests/api/makers_*.py``: a module adding endpoints with a new path parameter
adds a ``MAKERS`` entry (and, for POSTs, a ``SAMPLE_BODIES`` or ``RAW_BODIES`` entry) in a file of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import bearer

Maker = Callable[[TestClient, str], Awaitable[int]]


async def make_list(client: TestClient, key: str) -> int:
    response = await client.post("/v1/lists", json={"name": "secret list of A"}, headers=bearer(key))
    assert response.status == 201
    return int((await response.json())["id"])


async def make_key(client: TestClient, key: str) -> int:
    response = await client.post("/v1/api-keys", json={"name": "secret key of A"}, headers=bearer(key))
    assert response.status == 201
    return int((await response.json())["id"])


async def make_import(client: TestClient, key: str) -> int:
    list_id = await make_list(client, key)
    response = await client.post(
        f"/v1/lists/{list_id}/imports",
        data=b"phone,first_name\n+14155552671,secret name\n",
        headers={**bearer(key), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    return int((await response.json())["id"])


MAKERS: dict[str, Maker] = {"list_id": make_list, "key_id": make_key, "import_id": make_import}
SAMPLE_BODIES: dict[str, Any] = {"/v1/lists": {"name": "from B"}, "/v1/api-keys": {"name": "from B"}}
RAW_BODIES: dict[str, bytes] = {"/v1/lists/{list_id}/imports": b"phone\n+14155552672\n"}
