"""Templates over HTTP on PostgreSQL and SQLite: versioning, save-time checks, built-ins and previews."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import KeyMaker, bearer

SMS = {
    "name": "spring",
    "channel": "sms",
    "body": "Hi {{ first_name }}, 20% off today. Reply STOP to opt out",
}
EMAIL = {
    "name": "spring mail",
    "channel": "email",
    "subject": "Hi {{ first_name | default('there') }}",
    "text": "Shop: https://shop.example/sale\nUnsubscribe: {{ unsubscribe_url }}",
    "html": '<p>Hi {{ first_name }}</p>\n<a href="https://shop.example/sale">Shop</a>\n'
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
}


async def _create(client: TestClient, key: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await client.post("/v1/templates", json=body, headers=bearer(key))
    data: dict[str, Any] = await response.json()
    assert response.status == status, data
    return data


async def _preview(client: TestClient, key: str, template_id: int, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/templates/{template_id}/preview", json=body, headers=bearer(key))
    data: dict[str, Any] = await response.json()
    assert response.status == 200, data
    return data


def _codes(preview: dict[str, Any]) -> list[str]:
    return [w["code"] for w in preview["warnings"]]


async def test_create_get_and_versioning(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    created = await _create(client, key, SMS)
    tid = created["id"]
    assert created["current_version"] == 1
    assert created["builtin"] is False
    assert created["current"]["body"] == SMS["body"]
    assert created["current"]["variables"] == ["first_name"]
    first_version_id = created["current"]["version_id"]

    edit = {"name": "spring v2", "body": "Hello {{ name }}! Reply STOP to opt out"}
    response = await client.put(f"/v1/templates/{tid}", json=edit, headers=bearer(key))
    updated = await response.json()
    assert response.status == 200, updated
    assert updated["current_version"] == 2
    assert updated["name"] == "spring v2"
    assert updated["current"]["version_id"] != first_version_id

    old = await (await client.get(f"/v1/templates/{tid}/versions/1", headers=bearer(key))).json()
    assert old["body"] == SMS["body"]
    assert old["version_id"] == first_version_id
    current = await (await client.get(f"/v1/templates/{tid}", headers=bearer(key))).json()
    assert current["current"]["body"] == edit["body"]
    assert current["current"]["version"] == 2
    missing = await client.get(f"/v1/templates/{tid}/versions/3", headers=bearer(key))
    assert missing.status == 404


async def test_names_are_unique_per_workspace_and_freed_by_delete(
    client: TestClient, make_key: KeyMaker
) -> None:
    key, other = await make_key("a"), await make_key("b")
    first = await _create(client, key, SMS)
    clash = await _create(client, key, SMS, status=409)
    assert clash["error"]["code"] == "conflict"
    await _create(client, other, SMS)  # another workspace may use the name

    second = await _create(client, key, {**SMS, "name": "other"})
    rename = await client.put(
        f"/v1/templates/{second['id']}", json={**SMS, "channel": None}, headers=bearer(key)
    )
    assert rename.status == 409

    deleted = await client.delete(f"/v1/templates/{first['id']}", headers=bearer(key))
    assert deleted.status == 204
    assert (await client.get(f"/v1/templates/{first['id']}", headers=bearer(key))).status == 404
    assert (await client.delete(f"/v1/templates/{first['id']}", headers=bearer(key))).status == 404
    await _create(client, key, SMS)  # the name is free again


async def test_syntax_errors_name_part_and_line(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    body = {**EMAIL, "subject": "Hi {{ first_name", "html": "<p>\nline two\n{% if x %}never closed\n</p>"}
    error = (await _create(client, key, body, status=422))["error"]
    assert error["code"] == "invalid_template"
    by_field = {d["field"]: d for d in error["details"]}
    assert set(by_field) == {"subject", "html"}
    assert by_field["subject"]["line"] == 1
    assert by_field["subject"]["reason"] == "syntax"
    assert by_field["html"]["part"] == "html"
    assert by_field["html"]["line"] >= 3
    assert "line" in error["message"]

    unsafe = (await _create(client, key, {**SMS, "body": "ok\n{{ ''.__class__.__mro__ }}"}, status=422))[
        "error"
    ]
    assert unsafe["details"][0]["line"] == 2
    assert unsafe["details"][0]["reason"] == "unsafe"

    tid = (await _create(client, key, SMS))["id"]
    bad_edit = await client.put(
        f"/v1/templates/{tid}", json={"body": "{{ x | attr('y') }}"}, headers=bearer(key)
    )
    assert bad_edit.status == 422
    unchanged = await (await client.get(f"/v1/templates/{tid}", headers=bearer(key))).json()
    assert unchanged["current_version"] == 1  # nothing half-written


async def test_parts_required_per_channel(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    cases = [
        ({"name": "a", "channel": "sms"}, {"body"}),
        ({"name": "b", "channel": "sms", "body": "x", "subject": "y"}, {"subject"}),
        ({"name": "c", "channel": "email", "text": "x"}, {"subject"}),
        ({"name": "d", "channel": "email", "subject": "x"}, {"text"}),
        ({"name": "e", "channel": "email", "subject": "x", "html": "y", "body": "z"}, {"body"}),
        ({"name": "f", "channel": "fax", "body": "x"}, {"channel"}),
        ({"name": "builtin/sms/mine", "channel": "sms", "body": "x"}, set()),
    ]
    for body, fields in cases:
        error = (await _create(client, key, body, status=422))["error"]
        assert {d.get("field") for d in error["details"]} >= fields, (body, error)
    tid = (await _create(client, key, SMS))["id"]
    switch = await client.put(f"/v1/templates/{tid}", json={**EMAIL, "name": None}, headers=bearer(key))
    assert switch.status == 422


async def test_builtins_are_listed_for_everyone_and_read_only(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key("a", ("read", "write"))
    page = await (await client.get("/v1/templates?builtin=true&limit=500", headers=bearer(key))).json()
    names = {item["name"] for item in page["items"]}
    assert {"builtin/sms/discount", "builtin/email/winback"} <= names
    assert len(names) == 12
    assert all(item["builtin"] for item in page["items"])
    other = await make_key("b", ("read",))
    seen = await (await client.get("/v1/templates?builtin=true&limit=500", headers=bearer(other))).json()
    assert {i["id"] for i in seen["items"]} == {i["id"] for i in page["items"]}

    builtin = next(i for i in page["items"] if i["name"] == "builtin/sms/discount")
    one = await (await client.get(f"/v1/templates/{builtin['id']}", headers=bearer(key))).json()
    assert "Reply STOP to opt out" in one["current"]["body"]
    for response in (
        await client.put(f"/v1/templates/{builtin['id']}", json={"body": "mine"}, headers=bearer(key)),
        await client.delete(f"/v1/templates/{builtin['id']}", headers=bearer(key)),
    ):
        assert response.status == 409
        assert "read-only" in (await response.json())["error"]["message"]
    # a copy is an ordinary template
    await _create(client, key, {"name": "my discount", "channel": "sms", "body": one["current"]["body"]})


async def test_list_pages_and_filters(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    for i in range(3):
        await _create(client, key, {**SMS, "name": f"t{i}"})
    await _create(client, key, EMAIL)
    seen: list[str] = []
    cursor = ""
    while True:
        url = f"/v1/templates?builtin=false&limit=2{cursor}"
        page = await (await client.get(url, headers=bearer(key))).json()
        seen += [item["name"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == ["t0", "t1", "t2", "spring mail"]
    email_only = await (await client.get("/v1/templates?channel=email&limit=100", headers=bearer(key))).json()
    assert {i["channel"] for i in email_only["items"]} == {"email"}
    assert len(email_only["items"]) == 7
    assert (await client.get("/v1/templates?channel=fax", headers=bearer(key))).status == 422


async def test_idempotent_create(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    headers = {**bearer(key), "Idempotency-Key": "tpl-1"}
    first = await client.post("/v1/templates", json=SMS, headers=headers)
    again = await client.post("/v1/templates", json=SMS, headers=headers)
    assert first.status == again.status == 201
    assert (await first.json())["id"] == (await again.json())["id"]


# --------------------------------------------------------------------------------------------- preview


async def test_preview_counts_segments_at_the_boundary(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    stop = " Reply STOP"
    for length, segments in [(160, 1), (161, 2), (306, 2), (307, 3)]:
        body = "{{ word }}" + "a" * (length - 4 - len(stop)) + stop
        tid = (await _create(client, key, {**SMS, "name": f"len{length}", "body": body}))["id"]
        preview = await _preview(
            client, key, tid, variables={"word": "Sale"}, provider_price_per_segment="0.0075", max_segments=2
        )
        assert preview["sms"]["characters"] == preview["sms"]["units"] == length
        assert preview["sms"]["segments"] == segments, length
        assert preview["sms"]["encoding"] == "GSM-7"
        total = str(Decimal("0.0075") * segments)
        assert preview["cost"] == {"price_per_segment": "0.0075", "segments": segments, "total": total}
        assert ("too_many_segments" in _codes(preview)) is (segments > 2)


async def test_preview_reports_ucs2_and_smart_encoding(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    tid = (await _create(client, key, {**SMS, "body": "It’s “ours” – 20% off… Reply STOP"}))["id"]
    plain = await _preview(client, key, tid)
    assert plain["sms"]["encoding"] == "UCS-2"
    assert plain["sms"]["non_gsm_characters"] == [
        "’",
        "“",
        "”",
        "–",
        "…",
    ]
    assert plain["sms"]["suggestions"]["’"] == "'"
    assert "ucs2_forced" in _codes(plain)
    smart = await _preview(client, key, tid, smart_encoding=True)
    assert smart["smart_encoded"] is True
    assert smart["parts"]["body"] == 'It\'s "ours" - 20% off... Reply STOP'
    assert smart["sms"]["encoding"] == "GSM-7"
    assert "ucs2_forced" not in _codes(smart)


async def test_preview_warns_instead_of_failing(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    body = "Hi {{ first_name }}, {{ discount }}% off at https://shop.example/sale?x=1"
    tid = (await _create(client, key, {**SMS, "body": body}))["id"]
    preview = await _preview(client, key, tid, contact={"first_name": "Ann"})
    assert preview["missing_variables"] == ["discount"]
    assert preview["parts"]["body"].startswith("Hi Ann, [discount]% off at http://127.0.0.1:8080/r/sample/")
    missing = next(w for w in preview["warnings"] if w["code"] == "unresolved_variable")
    assert missing["details"]["variable"] == "discount"
    assert "no_opt_out" in _codes(preview)
    assert "untracked_link" not in _codes(preview)
    assert preview["links"][0]["url"] == "https://shop.example/sale?x=1"

    untracked = await _preview(
        client, key, tid, variables={"discount": 5, "first_name": "Bo"}, track_links=False
    )
    assert untracked["missing_variables"] == []
    assert "untracked_link" in _codes(untracked)
    assert untracked["parts"]["body"] == "Hi Bo, 5% off at https://shop.example/sale?x=1"


async def test_preview_contact_overrides_variables_and_old_versions(
    client: TestClient, make_key: KeyMaker
) -> None:
    key = await make_key()
    body = "{{ first_name }} {{ tier | default('basic') }} {{ expires | date('%d %b %H:%M') }}. STOP"
    tid = (await _create(client, key, {**SMS, "body": body}))["id"]
    await client.put(f"/v1/templates/{tid}", json={"body": "v2. Reply STOP"}, headers=bearer(key))
    preview = await _preview(
        client,
        key,
        tid,
        version=1,
        variables={"first_name": "Campaign", "tier": "x", "expires": "2025-06-01T12:00:00+00:00"},
        contact={"first_name": "Zoe", "timezone": "Asia/Tokyo", "attributes": {"tier": "gold"}},
    )
    assert preview["version"] == 1
    assert preview["parts"]["body"] == "Zoe gold 01 Jun 21:00. STOP"
    assert (await _preview(client, key, tid))["parts"]["body"] == "v2. Reply STOP"
    bad = await client.post(f"/v1/templates/{tid}/preview", json={"version": 9}, headers=bearer(key))
    assert bad.status == 404
    zone = await client.post(
        f"/v1/templates/{tid}/preview", json={"contact": {"timezone": "Mars/Base"}}, headers=bearer(key)
    )
    assert zone.status == 422


async def test_preview_email(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    tid = (await _create(client, key, EMAIL))["id"]
    preview = await _preview(client, key, tid, variables={"first_name": "<Al>"})
    parts = preview["parts"]
    assert parts["subject"] == "Hi <Al>"  # only html escapes
    assert "<p>Hi &lt;Al&gt;</p>" in parts["html"]
    assert 'href="http://127.0.0.1:8080/r/sample/' in parts["html"]
    assert 'href="http://127.0.0.1:8080/u/preview"' in parts["html"]  # the unsubscribe link is not tracked
    assert "Shop: http://127.0.0.1:8080/r/sample/" in parts["text"]
    assert preview["sms"] is None
    assert preview["warnings"] == []
    assert preview["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    no_unsub = await _create(client, key, {**EMAIL, "name": "bare", "text": "hi", "html": None})
    assert "no_unsubscribe_link" in _codes(await _preview(client, key, no_unsub["id"]))


async def test_preview_of_a_builtin_with_samples(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    page = await (await client.get("/v1/templates?builtin=true&channel=sms", headers=bearer(key))).json()
    tid = next(i["id"] for i in page["items"] if i["name"] == "builtin/sms/holiday")
    variables = {
        "brand": "Acme",
        "holiday": "Easter",
        "discount": 15,
        "code": "EGG15",
        "expires": "2025-04-21",
        "shop_url": "https://acme.example/easter",
    }
    preview = await _preview(client, key, tid, variables=variables, provider_price_per_segment=0.05)
    assert preview["warnings"] == []
    assert preview["sms"]["segments"] <= 2
    assert preview["parts"]["body"].startswith("Acme: Happy Easter, friend! Celebrate with 15% off")
