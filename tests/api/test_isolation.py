"""A key never sees another workspace's data, proved for every registered endpoint.

Each path parameter maps to a maker (in ``tests/api/makers_*.py``) that creates that resource in workspace
A. A new endpoint with a new path parameter fails here until its maker is added, so isolation is checked as
the API grows. Workspace B's key must get 404 for A's ids, and must never see A's "secret" values.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

from aiohttp.test_utils import TestClient

import tests.api
from dispatcher.api.app import build_registry
from tests.conftest import KeyMaker, bearer


def _merged(name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for info in pkgutil.iter_modules(tests.api.__path__):
        if info.name.startswith("makers_"):
            merged.update(getattr(importlib.import_module(f"tests.api.{info.name}"), name, {}))
    return merged


MAKERS = _merged("MAKERS")
SAMPLE_BODIES = _merged("SAMPLE_BODIES")
RAW_BODIES = _merged("RAW_BODIES")


async def _call_as_b(client: TestClient, method: str, template: str, path: str, key_b: str) -> Any:
    if template in RAW_BODIES:
        headers = {**bearer(key_b), "Content-Type": "text/csv"}
        return await client.request(method, path, data=RAW_BODIES[template], headers=headers)
    body = SAMPLE_BODIES.get(template) if method in {"POST", "PUT", "PATCH"} else None
    return await client.request(method, path, json=body, headers=bearer(key_b))


async def test_every_endpoint_hides_other_workspaces(client: TestClient, make_key: KeyMaker) -> None:
    key_a = await make_key("brand-a", ("admin",))
    key_b = await make_key("brand-b", ("admin",))
    ids = {name: await maker(client, key_a) for name, maker in MAKERS.items()}
    checked = 0
    for ep in build_registry().endpoints:
        if ep.scope is None:
            continue
        params = re.findall(r"{(\w+)}", ep.path)
        missing = [p for p in params if p not in ids]
        assert not missing, f"add a maker for {missing} so {ep.method} {ep.path} is isolation-tested"
        path = ep.path
        for name in params:
            path = path.replace("{" + name + "}", str(ids[name]))
        response = await _call_as_b(client, ep.method, ep.path, path, key_b)
        text = await response.text()
        if params:
            assert response.status == 404, (ep.method, ep.path, response.status)
        else:
            assert response.status < 400, (ep.method, ep.path, text)
        assert "secret" not in text, (ep.method, ep.path)
        checked += 1
    assert checked >= 9
    # A still sees its own resources, untouched by B's deletes
    assert (await client.get(f"/v1/lists/{ids['list_id']}", headers=bearer(key_a))).status == 200
