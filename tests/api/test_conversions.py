"""``POST /v1/conversions`` over HTTP: attribution by tracking token or contact + campaign, idempotent by
external_id, scoped to the key's workspace."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from dispatcher.api.keys import SESSIONS, SETTINGS
from dispatcher.core.opens import message_token
from tests import inbound_seed as seed
from tests.conftest import KeyMaker, bearer


async def _seed(client: TestClient, slug: str) -> seed.Seeded:
    async with client.app[SESSIONS].begin() as session:
        return await seed.seed(session, count=2, slug=slug)


async def _post(client: TestClient, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/v1/conversions", json=body, headers=bearer(key))
    return response.status, await response.json()


async def test_token_conversion_counts_once(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key("acme", ("write",))
    s = await _seed(client, "acme")
    token = message_token(client.app[SETTINGS].secret_key, s.workspace_id, s.message_ids[0])
    body = {"token": token, "value": "49.90", "currency": "EUR", "external_id": "order-1"}
    results = await asyncio.gather(*(_post(client, key, body) for _ in range(10)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 9 + [201]
    bodies = {(b["id"], b["message_id"], b["value"], b["external_id"]) for _, b in results}
    assert len(bodies) == 1
    [(_, message_id, value, external_id)] = bodies
    assert (message_id, value, external_id) == (s.message_ids[0], "49.900000", "order-1")
    async with client.app[SESSIONS]() as session:
        [event] = await seed.events(session, s.workspace_id, "conversion")
    assert (event.campaign_id, event.contact_id, event.payload["currency"]) == (
        s.campaign_id,
        s.contact_ids[0],
        "EUR",
    )


async def test_contact_and_campaign_attribution(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key("acme", ("write",))
    s = await _seed(client, "acme")
    status, body = await _post(
        client, key, {"contact_id": s.contact_ids[1], "campaign_id": s.campaign_id, "external_id": "o2"}
    )
    assert (status, body["message_id"], body["value"]) == (201, s.message_ids[1], None)


async def test_bad_bodies_and_other_workspaces(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key("acme", ("write",))
    reader = await make_key("acme", ("read",), name="reader")
    mine = await _seed(client, "acme")
    theirs = await _seed(client, "rival")
    secret = client.app[SETTINGS].secret_key
    foreign_token = message_token(secret, theirs.workspace_id, theirs.message_ids[0])
    cases = [
        ({"external_id": "x"}, 422),  # no attribution
        ({"contact_id": mine.contact_ids[0], "external_id": "x"}, 422),
        ({"token": foreign_token, "external_id": "x"}, 404),
        ({"token": "nonsense.token.here", "external_id": "x"}, 404),
        ({"contact_id": theirs.contact_ids[0], "campaign_id": theirs.campaign_id, "external_id": "x"}, 404),
        ({"contact_id": mine.contact_ids[0], "campaign_id": mine.campaign_id, "external_id": ""}, 422),
        (
            {
                "contact_id": mine.contact_ids[0],
                "campaign_id": mine.campaign_id,
                "external_id": "x",
                "value": "-1",
            },
            422,
        ),
        (
            {
                "contact_id": mine.contact_ids[0],
                "campaign_id": mine.campaign_id,
                "external_id": "x",
                "currency": "eur",
            },
            422,
        ),
        (
            {
                "contact_id": mine.contact_ids[0],
                "campaign_id": mine.campaign_id,
                "external_id": "x",
                "extra": 1,
            },
            422,
        ),
    ]
    for body, expected in cases:
        status, answer = await _post(client, key, body)
        assert status == expected, (body, answer)
        assert set(answer) == {"error"}
    status, _ = await _post(
        client,
        reader,
        {"contact_id": mine.contact_ids[0], "campaign_id": mine.campaign_id, "external_id": "x"},
    )
    assert status == 403
    async with client.app[SESSIONS]() as session:
        assert await seed.events(session, mine.workspace_id) == []
        assert await seed.events(session, theirs.workspace_id) == []
