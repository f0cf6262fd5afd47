"""A key never sees another workspace's data, proved for every registered endpoint.

Each path parameter maps to a maker that creates that resource in workspace A. A new endpoint with a new
path parameter fails here until its maker is added, so isolation is checked as the API grows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from dispatcher.api.app import build_registry
from tests.conftest import KeyMaker, bearer

Maker = Callable[[TestClient, str], Awaitable[int]]


async def _make_list(client: TestClient, key: str) -> int:
    response = await client.post("/v1/lists", json={"name": "secret list of A"}, headers=bearer(key))
    assert response.status == 201
    return int((await response.json())["id"])


async def _make_key(client: TestClient, key: str) -> int:
    response = await client.post("/v1/api-keys", json={"name": "secret key of A"}, headers=bearer(key))
    assert response.status == 201
    return int((await response.json())["id"])


async def _make_import(client: TestClient, key: str) -> int:
    list_id = await _make_list(client, key)
    response = await client.post(
        f"/v1/lists/{list_id}/imports",
        data=b"phone,first_name\n+14155552671,secret name\n",
        headers={**bearer(key), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    return int((await response.json())["id"])


MAKERS: dict[str, Maker] = {"list_id": _make_list, "key_id": _make_key, "import_id": _make_import}
SAMPLE_BODIES = {"/v1/lists": {"name": "from B"}, "/v1/api-keys": {"name": "from B"}}
RAW_BODIES = {"/v1/lists/{list_id}/imports": b"phone\n+14155552672\n"}


async def test_every_endpoint_hides_other_workspaces(client: TestClient, make_key: KeyMaker) -> None:
    key_a = await make_key("brand-a", ("admin",))
    key_b = await make_key("brand-b", ("admin",))
    ids = {name: await maker(client, key_a) for name, maker in MAKERS.items()}
    checked = 0
    for ep in build_registry().endpoints:
        if ep.scope is None:
            continue
        params = [p.strip("{}") for p in ep.path.split("/") if p.startswith("{")]
        missing = [p for p in params if p not in ids]
        assert not missing, f"add a maker for {missing} so {ep.method} {ep.path} is isolation-tested"
        path = ep.path
        for name in params:
            path = path.replace("{" + name + "}", str(ids[name]))
        body = SAMPLE_BODIES.get(ep.path) if ep.method == "POST" else None
        if ep.path in RAW_BODIES:
            response = await client.request(
                ep.method, path, data=RAW_BODIES[ep.path], headers={**bearer(key_b), "Content-Type": "text/csv"}
            )
        else:
            response = await client.request(ep.method, path, json=body, headers=bearer(key_b))
        text = await response.text()
        if params:
            assert response.status == 404, (ep.method, ep.path, response.status)
        else:
            assert response.status < 400, (ep.method, ep.path, text)
        assert "secret" not in text, (ep.method, ep.path)
        checked += 1
    assert checked >= 9
    # and A still sees its own resources, untouched by B's deletes
    assert (await client.get(f"/v1/lists/{ids['list_id']}", headers=bearer(key_a))).status == 200
