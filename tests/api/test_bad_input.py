"""Bad input over HTTP, on SQLite and PostgreSQL: always a JSON 4xx naming the problem, never a row written.

Uploads: 10 MB of random bytes, 1,000 malformed rows, a file over the size limit. JSON: every endpoint that
takes a JSON body gets invalid UTF-8, invalid JSON and wrong shapes, and every field of its model gets values
of the wrong type, huge numbers (``1e400``, ``2**70``) and ``null``; the field list comes from the same
models that build the OpenAPI document, so a new endpoint or field is covered without editing this file.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.api.app import build_registry, create_app
from dispatcher.api.registry import Endpoint
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine
from dispatcher.storage.models import Base
from tests.api.makers_campaigns import make_campaign, make_provider
from tests.api.makers_core import Maker, make_list
from tests.api.makers_templates import make_template
from tests.conftest import KeyMaker, bearer
from tests.helpers import drain

JSON_ENDPOINTS = [ep for ep in build_registry().endpoints if ep.body is not None]
_ID_MAKERS: dict[str, Maker] = {
    "list_id": make_list,
    "template_id": make_template,
    "campaign_id": make_campaign,
    "provider_id": make_provider,
}
_CSV = {"Content-Type": "text/csv"}


@pytest.fixture
async def key(make_key: KeyMaker) -> str:
    return await make_key()


async def _row_counts(settings: Settings) -> dict[str, int]:
    """Rows in every table: 'nothing written' means this does not change."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
                for table in Base.metadata.sorted_tables
            }
    finally:
        await engine.dispose()


def _assert_error(body: Any, status: int, *, code: str | None = None) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body)
    error: dict[str, Any] = body["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


async def _new_list(client: TestClient, key: str) -> int:
    response = await client.post("/v1/lists", json={"name": "L", "default_region": "US"}, headers=bearer(key))
    assert response.status == 201
    return int((await response.json())["id"])


# --- uploads -------------------------------------------------------------------------------------------


async def test_ten_megabytes_of_random_bytes_is_422_and_writes_nothing(
    client: TestClient, key: str, settings: Settings
) -> None:
    list_id = await _new_list(client, key)
    before = await _row_counts(settings)
    noise = random.Random(8).randbytes(10 << 20)
    response = await client.post(f"/v1/lists/{list_id}/imports", data=noise, headers={**bearer(key), **_CSV})
    _assert_error(await response.json(), response.status, code="invalid_csv")
    assert response.status == 422
    assert await _row_counts(settings) == before


_TEXT_KINDS = [
    lambda i: b"+1415555%04d,a%d@example.com,Ann,surplus,fields" % (i, i),  # ragged: too many columns
    lambda i: b'+1415555%04d,"a%d@example.com"tail,Bob,' % (i, i),  # text after a closing quote
    lambda i: b'+1415555%04d,x"y"z,"Cy' % i + b'",extra,"',  # stray quotes, one left open
    lambda i: "\u202e,\u00a0\u3000,\ufeff\u200b,%d,x".encode() % i,  # invisible and bidi characters
]
_BINARY_KINDS = [
    lambda i: b"+1415555%04d,a\x00b@example.com,nul\x00" % i,
    lambda i: random.Random(i).randbytes(24).replace(b"\n", b" "),
]


def _file(kinds: list[Any], count: int) -> bytes:
    rows = [kinds[i % len(kinds)](i) for i in range(count)]
    return b"phone,email,first_name\n" + b"\n".join(rows) + b"\n"


async def test_thousand_malformed_text_rows_are_all_rejected_and_nothing_is_added(
    client: TestClient, key: str, settings: Settings
) -> None:
    list_id = await _new_list(client, key)
    body = _file(_TEXT_KINDS, 1000)
    response = await client.post(f"/v1/lists/{list_id}/imports", data=body, headers={**bearer(key), **_CSV})
    started = await response.json()
    assert response.status == 202, started
    await drain(settings)
    job = await (await client.get(f"/v1/imports/{started['id']}", headers=bearer(key))).json()
    assert job["state"] == "completed", job
    assert job["accepted"] == 0, job["reasons"]
    assert job["accepted"] + job["rejected"] + job["duplicate"] + job["suppressed"] == job["rows_done"]
    # a quote left open swallows the line breaks after it, so some physical lines merge into one record
    assert 0 < job["rows_done"] <= 1000
    assert set(job["reasons"]) <= {"malformed_row", "invalid_phone", "invalid_email", "empty"}
    rejects = await client.get(f"/v1/imports/{started['id']}/rejects", headers=bearer(key))
    assert len(list(csv.reader(io.StringIO(await rejects.text())))) == job["rejected"] + 1
    listed = await (await client.get(f"/v1/lists/{list_id}/contacts", headers=bearer(key))).json()
    assert listed["items"] == []


async def test_thousand_rows_with_nuls_and_binary_are_422_and_write_nothing(
    client: TestClient, key: str, settings: Settings
) -> None:
    list_id = await _new_list(client, key)
    before = await _row_counts(settings)
    body = _file(_TEXT_KINDS + _BINARY_KINDS, 1000)
    response = await client.post(f"/v1/lists/{list_id}/imports", data=body, headers={**bearer(key), **_CSV})
    error = _assert_error(await response.json(), response.status, code="invalid_csv")
    assert response.status == 422
    assert "not a text CSV" in error["message"]
    assert await _row_counts(settings) == before


@pytest.mark.parametrize(
    ("poison", "fragment"),
    [(b"\x00", "NUL byte"), (b"\xff\xfe\xc3\x28", "UTF-8"), (bytes(range(1, 32)) + b"\x80\x81", "")],
    ids=["nul", "invalid-utf8", "binary"],
)
async def test_poisoned_row_after_megabytes_fails_the_whole_import(
    client: TestClient, key: str, settings: Settings, poison: bytes, fragment: str
) -> None:
    """Bad bytes after the first stored chunk: the upload is only probed at its start (202), so the worker
    refuses the file as a whole: the import fails naming the problem and no contact or staged row stays."""
    list_id = await _new_list(client, key)

    async def body() -> AsyncIterator[bytes]:
        yield b"phone,first_name\n"
        for i in range(8):  # 1.4 MB: the poison lands in the second stored chunk (1 MB each)
            yield b"".join(b"+1415555%04d,Ann\n" % ((i * 500 + j) % 10_000) for j in range(500)) * 20
        yield b"+14155552672," + poison + b"\n"

    response = await client.post(f"/v1/lists/{list_id}/imports", data=body(), headers={**bearer(key), **_CSV})
    started = await response.json()
    if response.status != 202:  # refusing it up front is fine too
        error = _assert_error(started, response.status, code="invalid_csv")
        assert fragment in error["message"]
        return
    await drain(settings)
    job = await (await client.get(f"/v1/imports/{started['id']}", headers=bearer(key))).json()
    assert job["state"] == "failed", job
    assert fragment in job["error"]
    counts = await _row_counts(settings)
    assert counts["contacts"] == counts["import_rows"] == counts["import_chunks"] == 0, counts


async def test_upload_over_the_limit_is_413_whether_declared_or_streamed(
    aiohttp_client: Any, settings: Settings, make_key: KeyMaker
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(max_upload_bytes=1 << 20)))
    key = await make_key()
    list_id = await _new_list(client, key)
    before = await _row_counts(settings)
    big = b"phone\n" + b"+14155552671\n" * 100_000
    declared = await client.post(f"/v1/lists/{list_id}/imports", data=big, headers={**bearer(key), **_CSV})
    _assert_error(await declared.json(), declared.status, code="payload_too_large")
    assert declared.status == 413

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = await client.post(
        f"/v1/lists/{list_id}/imports", data=stream(), headers={**bearer(key), **_CSV}
    )
    assert streamed.status == 413
    assert await _row_counts(settings) == before


# --- JSON bodies ---------------------------------------------------------------------------------------


async def _paths(client: TestClient, key: str) -> dict[str, str]:
    """Each JSON endpoint's path with real ids of this workspace, so handlers get as far as the body."""
    ids = {name: await maker(client, key) for name, maker in _ID_MAKERS.items()}
    paths = {}
    for ep in JSON_ENDPOINTS:
        path = ep.path
        for name, value in ids.items():
            path = path.replace("{" + name + "}", str(value))
        assert "{" not in path, f"add a maker for {ep.path}"
        paths[ep.name] = path
    return paths


_RAW_BODIES = [
    (b"\xff\xfe\xfd", 400),
    (b'{"name": "caf\xe9"}', 400),  # latin-1, not UTF-8
    (b'{"name": "\xed\xa0\x80"}', 400),  # an encoded surrogate is not UTF-8 either
    (b"{not json", 400),
    (b'{"name": "x",}', 400),
    (b'{"name": "a\x00b"}', 400),  # raw control character inside a JSON string
    (b"", 400),
    (b"   \n", 400),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, 400),  # nesting deep enough to hit the parser's recursion limit
    (b"[1, 2, 3]", 422),
    (b"null", 422),
    (b'"a string"', 422),
    (b"12", 422),
    (b'{"no_such_field_anywhere": 1}', 422),
]


async def test_every_json_endpoint_refuses_broken_bodies_and_writes_nothing(
    client: TestClient, key: str, settings: Settings
) -> None:
    paths = await _paths(client, key)
    before = await _row_counts(settings)
    for ep in JSON_ENDPOINTS:
        for raw, status in _RAW_BODIES:
            response = await client.request(
                ep.method,
                paths[ep.name],
                data=raw,
                headers={**bearer(key), "Content-Type": "application/json"},
            )
            body = await response.json()
            assert response.status == status, (ep.method, ep.path, raw[:40], body)
            _assert_error(body, response.status, code="malformed_body" if status == 400 else "invalid_input")
    assert await _row_counts(settings) == before


def _property_types(endpoint: Endpoint) -> dict[str, set[str]]:
    """JSON types each body field accepts, read from the model's JSON schema (``$ref`` means object)."""
    assert endpoint.body is not None
    schema = endpoint.body.model_json_schema()
    found: dict[str, set[str]] = {}
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf") or prop.get("oneOf") or [prop]
        types: set[str] = set()
        for option in options:
            if "$ref" in option or "properties" in option or "additionalProperties" in option:
                types.add("object")
            kind = option.get("type")
            types.update(kind if isinstance(kind, list) else [kind] if kind else [])
            if "enum" in option or "const" in option:
                types.update(type(v).__name__.replace("str", "string") for v in option.get("enum", []))
        if "integer" in types:
            types.add("number")
        found[name] = types or {"any"}
    return found


_WRONG = {
    "array": [["x"], []],
    "object": [{"x": 1}],
    "string": ["not a number"],
    "boolean": [True],
    "null": [None],
}


def _wrong_values(types: set[str]) -> list[Any]:
    if "any" in types:
        return []
    values = [v for kind, options in _WRONG.items() if kind not in types for v in options]
    if "string" in types and "number" not in types:
        values.append(12)
    if "number" in types:
        values += [1e400, -1e400, 2**70, -(2**70), 10**400]
    return values


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS, ids=lambda ep: ep.name)
async def test_wrong_types_and_huge_numbers_in_every_field_are_422(
    client: TestClient, key: str, settings: Settings, endpoint: Endpoint
) -> None:
    paths = await _paths(client, key)
    before = await _row_counts(settings)
    checked = 0
    for field, types in _property_types(endpoint).items():
        for value in _wrong_values(types):
            response = await client.request(
                endpoint.method, paths[endpoint.name], json={field: value}, headers=bearer(key)
            )
            body = await response.json()
            assert response.status in {400, 422}, (endpoint.path, field, value, body)
            error = _assert_error(body, response.status)
            named = [d.get("field") or "" for d in error["details"]]
            assert response.status == 400 or any(n.split(".")[0] == field for n in named), (
                endpoint.path,
                field,
                value,
                error,
            )
            checked += 1
    assert checked >= 5
    assert await _row_counts(settings) == before


@pytest.mark.parametrize(
    "query",
    [
        "limit=1e400",
        "limit=" + "9" * 400,
        "limit=-1",
        "limit=[]",
        "cursor=" + str(2**70),
        "cursor=-1",
        "cursor=1e3",
        "limit=10&limit=20",
        "limit=%00",
    ],
)
async def test_bad_query_numbers_are_422(client: TestClient, key: str, query: str) -> None:
    for path in ("/v1/lists", "/v1/campaigns", "/v1/templates", "/v1/suppressions"):
        response = await client.get(f"{path}?{query}", headers=bearer(key))
        body = await response.json()
        assert response.status == 422, (path, query, body)
        _assert_error(body, response.status, code="invalid_input")
