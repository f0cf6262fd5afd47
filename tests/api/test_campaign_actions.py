"""Campaign lifecycle over HTTP: the state machine's 409s, cancel, resend-failed, 422s naming the field,
and providers whose secrets never come back."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from dispatcher.api.keys import REDIS, SETTINGS
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.models import Campaign, Message, Provider
from tests.api.makers_campaigns import (
    START_AT,
    make_provider_named,
    make_sms_template,
    new_campaign,
    provider_body,
    seed_audience,
)
from tests.api.test_campaigns import ledger, start_and_plan
from tests.conftest import KeyMaker, bearer
from tests.helpers import drain


async def post(client: TestClient, key: str, path: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, headers=bearer(key))
    return response.status, await response.json()


async def test_state_machine_over_http(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    list_id, ids = await seed_audience(client, key)
    template_id = await make_sms_template(client, key, "offer")
    draft = await new_campaign(client, key, list_id=list_id, template_id=template_id)
    one = f"/v1/campaigns/{draft['id']}"

    status, body = await post(client, key, f"{one}/pause")
    assert status == 409
    assert (
        body["error"]["message"]
        == "campaign cannot be paused: it has not been started; allowed from: running"
    )
    status, body = await post(client, key, f"{one}/start")
    assert status == 409
    assert "no provider" in body["error"]["message"]
    provider_id = await make_provider_named(client, key, "twilio")
    assert (await client.put(one, json={"provider_id": provider_id}, headers=bearer(key))).status == 200

    found = await start_and_plan(client, key, draft["id"])
    assert found["state"] == "running"
    status, body = await post(client, key, f"{one}/start")
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert "already running" in body["error"]["message"]
    edit = await client.put(one, json={"name": "late edit"}, headers=bearer(key))
    assert edit.status == 409
    assert "only a draft can be edited" in (await edit.json())["error"]["message"]

    assert (await post(client, key, f"{one}/pause"))[1]["state"] == "paused"
    assert "already paused" in (await post(client, key, f"{one}/pause"))[1]["error"]["message"]
    assert (await post(client, key, f"{one}/resume"))[1]["state"] == "running"
    status, body = await post(client, key, f"{one}/cancel")
    assert (status, body["state"]) == (200, "cancelled")
    assert (body["progress"]["cancelled"], body["progress"]["planned"], body["progress"]["suppressed"]) == (
        3,
        0,
        1,
    )
    assert body["finished_at"] is not None
    status, body = await post(client, key, f"{one}/resume")
    assert status == 409
    assert "cancelled (final)" in body["error"]["message"]
    rows = await ledger(client, draft["id"])
    assert {r.state for r in rows if r.contact_id != ids["Sam"]} == {"cancelled"}


async def test_resend_failed_only_retries_passing_errors(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    list_id, ids = await seed_audience(client, key)
    provider_id = await make_provider_named(client, key, "twilio")
    template_id = await make_sms_template(client, key, "offer")
    draft = await new_campaign(client, key, list_id=list_id, template_id=template_id, provider_id=provider_id)
    await start_and_plan(client, key, draft["id"])
    outcomes = {ids["Nina"]: "timeout", ids["Liam"]: "invalid_number", ids["Alma"]: None}
    engine = create_engine(client.app[SETTINGS].database_url)
    async with session_factory(engine).begin() as session:  # what the dispatcher would have recorded
        for contact_id, code in outcomes.items():
            await session.execute(
                sa.update(Message)
                .where(Message.campaign_id == draft["id"], Message.contact_id == contact_id)
                .values(
                    state="failed", attempts=5, error_code=code, idempotency_key="k1", possible_duplicate=True
                )
            )
    await engine.dispose()

    status, body = await post(client, key, f"/v1/campaigns/{draft['id']}/resend-failed")
    assert status == 200, body
    assert (body["resent"], body["skipped"]) == (2, 0)
    resend = [b for b in body["campaign"]["batches"] if b["kind"] == "resend"]
    assert [(b["seq"], b["state"], b["size"]) for b in resend] == [(2, "released", 2)]
    rows = {r.contact_id: r for r in await ledger(client, draft["id"])}
    for name in ("Nina", "Alma"):
        row = rows[ids[name]]
        assert (row.state, row.attempts, row.batch_id, row.idempotency_key) == (
            "planned",
            0,
            resend[0]["id"],
            None,
        )
        assert row.possible_duplicate is True
        assert row.not_before is not None
    assert (rows[ids["Liam"]].state, rows[ids["Liam"]].error_code) == ("failed", "invalid_number")
    status, body = await post(client, key, f"/v1/campaigns/{draft['id']}/resend-failed")
    assert status == 409
    assert "no failed recipient" in body["error"]["message"]


BASE = {"name": "x", "channel": "sms", "template_id": "T", "list_id": "L"}
DROP = object()


def bad(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**BASE, **changes}.items() if v is not DROP}


BAD_CAMPAIGNS = [
    (bad(name=DROP), "name"),
    (bad(channel="fax"), "channel"),
    (bad(template_id=DROP), "template_id"),
    (bad(variants=[{"template_id": "T"}]), "variants"),
    (bad(list_id=DROP), "list_id"),
    (bad(list_id=999999), "list_id"),
    (bad(template_id=999999), "template_id"),
    (bad(channel="email"), "template_id"),
    (bad(provider_id=999999), "provider_id"),
    (bad(schedule={"windows": "10-11"}), "schedule.windows"),
    (bad(schedule={"windows": "22:00-23:00"}), "schedule.windows"),  # all in quiet hours
    (bad(schedule={"start_at": START_AT, "end_at": "2030-01-13T00:00:00Z"}), "schedule.end_at"),
    (bad(schedule={"start_at": "2030-01-14T00:00"}), "schedule.start_at"),  # naive
    (bad(pilot={"percent": 100}), "pilot.percent"),
    (bad(limits={"max_attempts": 0}), "limits.max_attempts"),
    (bad(template_id=DROP, variants=[{"template_id": "T", "weight": 0}]), "variants"),
    (bad(sender="not a sender!"), "sender"),
    (bad(surprise=1), "surprise"),
]


def fill(body: dict[str, Any], list_id: int, template_id: int) -> dict[str, Any]:
    filled = {k: (list_id if v == "L" else template_id if v == "T" else v) for k, v in body.items()}
    if "variants" in filled:
        filled["variants"] = [{**v, "template_id": template_id} for v in filled["variants"]]
    return filled


async def test_validation_errors_name_the_field(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    list_id = int(
        (await (await client.post("/v1/lists", json={"name": "l"}, headers=bearer(key))).json())["id"]
    )
    template_id = await make_sms_template(client, key, "offer")
    for body, field in BAD_CAMPAIGNS:
        response = await client.post(
            "/v1/campaigns", json=fill(body, list_id, template_id), headers=bearer(key)
        )
        reply = await response.json()
        assert response.status == 422, (body, reply)
        assert field in [d.get("field") for d in reply["error"]["details"]], (body, reply)
    page = await (await client.get("/v1/campaigns", headers=bearer(key))).json()
    assert page["items"] == []  # nothing half-written


async def test_providers_never_return_their_secret(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    made = await client.post(
        "/v1/providers", json=provider_body("twilio", token="tok-123"), headers=bearer(key)
    )
    assert made.status == 201
    text = await made.text()
    provider = await made.json()
    assert "tok-123" not in text
    assert provider["config"] == {
        "base_url": "http://127.0.0.1:9",
        "account_sid": "AC-test",
        "from": ["+15005550006"],
        "auth_token_set": True,
    }
    one = f"/v1/providers/{provider['id']}"
    for path in (one, "/v1/providers"):
        assert "tok-123" not in await (await client.get(path, headers=bearer(key))).text()
    config = {"base_url": "https://api.example.com", "account_sid": "AC-2", "from": ["+15005550007"]}
    changed = await client.put(one, json={"config": config, "enabled": False}, headers=bearer(key))
    assert changed.status == 200
    assert (await changed.json())["config"]["auth_token_set"] is True
    assert (await changed.json())["enabled"] is False
    engine = create_engine(client.app[SETTINGS].database_url)
    async with session_factory(engine)() as session:
        stored = await session.get(Provider, provider["id"])
        assert stored is not None
        assert stored.config["auth_token"] == "tok-123"  # kept: the update left it out
    await engine.dispose()

    duplicate = await client.post("/v1/providers", json=provider_body("twilio"), headers=bearer(key))
    assert duplicate.status == 409
    list_id = int(
        (await (await client.post("/v1/lists", json={"name": "l"}, headers=bearer(key))).json())["id"]
    )
    template_id = await make_sms_template(client, key, "offer")
    await new_campaign(client, key, list_id=list_id, template_id=template_id, provider_id=provider["id"])
    refused = await client.delete(one, headers=bearer(key))
    assert refused.status == 409
    assert "disable it" in (await refused.json())["error"]["message"]
    spare = await make_provider_named(client, key, "spare")
    assert (await client.delete(f"/v1/providers/{spare}", headers=bearer(key))).status == 204
    assert (await client.get(f"/v1/providers/{spare}", headers=bearer(key))).status == 404


def twilio(**changes: Any) -> dict[str, Any]:
    config = {"base_url": "http://x", "account_sid": "a", "auth_token": "t", "from": ["+15005550006"]}
    return {"config": {k: v for k, v in {**config, **changes}.items() if v is not DROP}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (twilio(base_url="ftp://x"), "config.base_url"),
        (twilio(auth_token=DROP), "config.auth_token"),
        (twilio(**{"from": []}), "config.from"),
        (twilio(**{"from": ["+1 (555) bad"]}), "config.from"),
        ({"channel": "email"}, "channel"),
        ({"kind": "smpp"}, "config.host"),  # an SMPP provider's config is checked as SMPP's
        ({"kind": "carrier-pigeon"}, "kind"),
        ({"rate_limit_per_s": 0}, "rate_limit_per_s"),
    ],
)
async def test_provider_validation_names_the_field(
    client: TestClient, make_key: KeyMaker, change: dict[str, Any], field: str
) -> None:
    key = await make_key()
    response = await client.post("/v1/providers", json={**provider_body("p"), **change}, headers=bearer(key))
    assert response.status == 422
    assert field in [d.get("field") for d in (await response.json())["error"]["details"]]


async def test_planning_again_after_a_crash_changes_nothing(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    list_id, _ = await seed_audience(client, key)
    provider_id = await make_provider_named(client, key, "twilio")
    template_id = await make_sms_template(client, key, "offer")
    draft = await new_campaign(client, key, list_id=list_id, template_id=template_id, provider_id=provider_id)
    first = await start_and_plan(client, key, draft["id"])
    before = [(r.id, r.state, r.not_before, r.batch_id) for r in await ledger(client, draft["id"])]
    # a worker died after the last page but before the campaign moved on: it is still scheduled
    engine = create_engine(client.app[SETTINGS].database_url)
    async with session_factory(engine).begin() as session:
        await session.execute(sa.update(Campaign).where(Campaign.id == draft["id"]).values(state="scheduled"))
    await engine.dispose()
    await client.app[REDIS].enqueue_job(
        "plan_campaign", draft["id"], _queue_name=client.app[SETTINGS].queue_name
    )
    await drain(client.app[SETTINGS])
    again = await (await client.get(f"/v1/campaigns/{draft['id']}", headers=bearer(key))).json()
    assert again["state"] == "running"
    assert again["progress"] == first["progress"]
    assert again["batches"] == first["batches"]
    assert [(r.id, r.state, r.not_before, r.batch_id) for r in await ledger(client, draft["id"])] == before


async def test_resume_wakes_the_dispatcher_at_once(client: TestClient, make_key: KeyMaker) -> None:
    key = await make_key()
    list_id, _ = await seed_audience(client, key)
    template_id = await make_sms_template(client, key, "offer")
    provider_id = await make_provider_named(client, key, "twilio")
    draft = await new_campaign(client, key, list_id=list_id, template_id=template_id, provider_id=provider_id)
    assert (await start_and_plan(client, key, draft["id"]))["state"] == "running"
    assert (await post(client, key, f"/v1/campaigns/{draft['id']}/pause"))[1]["state"] == "paused"
    queue, queue_name = client.app[REDIS], client.app[SETTINGS].queue_name
    before = set(await queue.zrange(queue_name, 0, -1))
    assert (await post(client, key, f"/v1/campaigns/{draft['id']}/resume"))[1]["state"] == "running"
    woken = [job for job in set(await queue.zrange(queue_name, 0, -1)) - before if job.startswith(b"tick:")]
    assert len(woken) == 1  # a dispatch tick now, not at the next whole second
