"""Provider accounts over HTTP: the three kinds, their config checked by the channel, secrets write-only."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.makers_campaigns import provider_body
from tests.conftest import KeyMaker, bearer

SMTP: dict[str, Any] = {
    "name": "relay",
    "channel": "email",
    "kind": "smtp",
    "config": {
        "host": "127.0.0.1",
        "port": 2525,
        "tls": "none",
        "username": "shop",
        "password": "relay-secret",
        "from": ["news@shop.example"],
        "mail_from": "bounces@shop.example",
        "dkim_selector": "s1",
        "dkim_domain": "shop.example",
        "dkim_private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
    },
}
SMPP: dict[str, Any] = {
    "name": "smsc",
    "channel": "sms",
    "kind": "smpp",
    "config": {
        "host": "127.0.0.1",
        "port": 2775,
        "system_id": "esme",
        "password": "pw",
        "from": ["ACME"],
        "routes": {"prefixes": ["+44"]},
        "stop_reply": "Bye.",
    },
}


async def create(client: TestClient, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/providers", json=body, headers=bearer(key))
    return response.status, await response.json()


async def test_each_kind_is_created_and_its_secrets_never_come_back(
    client: TestClient, make_key: KeyMaker
) -> None:
    key = await make_key()
    for body, secrets in (
        (SMTP, ("password", "dkim_private_key")),
        (SMPP, ("password",)),
        (provider_body("twilio"), ("auth_token",)),
    ):
        status, created = await create(client, key, body)
        assert status == 201, created
        shown = created["config"]
        assert created["kind"] == body["kind"]
        for secret in secrets:
            assert secret not in shown
            assert shown[f"{secret}_set"] is True
        listed = await client.get(f"/v1/providers/{created['id']}", headers=bearer(key))
        text = await listed.text()
        assert all(str(body["config"][s]) not in text for s in secrets)


async def test_an_update_without_secrets_keeps_them(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    _, created = await create(client, key, SMPP)
    config = {k: v for k, v in SMPP["config"].items() if k != "password"} | {"window": 16}
    response = await client.put(
        f"/v1/providers/{created['id']}", json={"config": config}, headers=bearer(key)
    )
    assert response.status == 200, await response.text()
    shown = (await response.json())["config"]
    assert shown["window"] == 16
    assert shown["password_set"] is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channel": "sms"}, "channel"),  # an SMTP relay does not send SMS
        ({"config": {**SMTP["config"], "tls": "ssl"}}, "config"),
        ({"config": {**SMTP["config"], "dkim_selector": None}}, "config.dkim_selector"),
        ({"config": {**SMTP["config"], "bogus": 1}}, "config"),
        ({"config": {"port": 25}}, "config"),
    ],
)
async def test_a_bad_smtp_provider_is_refused_naming_the_field(
    client: TestClient, make_key: KeyMaker, change: dict[str, Any], field: str
) -> None:
    key = await make_key()
    status, body = await create(client, key, {**SMTP, **change})
    assert status == 422, body
    fields = [str(d.get("field", d.get("loc", ""))) for d in body["error"]["details"]]
    assert any(f.startswith(field) or field in f for f in fields), body


@pytest.mark.parametrize(
    "config",
    [
        {**SMPP["config"], "system_id": "x" * 16},  # SMPP 3.4 allows 15 octets
        {**SMPP["config"], "password": "123456789"},  # and 8 for the password
        {**SMPP["config"], "routes": {"prefixes": ["44"]}},
        {"host": "127.0.0.1", "from": ["ACME"]},
    ],
)
async def test_a_bad_smpp_provider_is_refused(
    client: TestClient, make_key: KeyMaker, config: dict[str, Any]
) -> None:
    status, body = await create(client, await make_key(), {**SMPP, "config": config})
    assert status == 422, body


async def test_twilio_needs_its_token_and_a_kind_change_needs_a_config(
    client: TestClient, make_key: KeyMaker
) -> None:
    key = await make_key()
    body = provider_body("no token")
    del body["config"]["auth_token"]
    status, answer = await create(client, key, body)
    assert status == 422
    assert "auth_token" in answer["error"]["message"]
    _, created = await create(client, key, SMPP)
    response = await client.put(
        f"/v1/providers/{created['id']}", json={"kind": "twilio_http"}, headers=bearer(key)
    )
    assert response.status == 422
    assert "config" in (await response.text())
