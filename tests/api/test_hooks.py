"""The public webhooks over HTTP: real-shaped Twilio and e-mail callbacks, duplicated, shuffled, some forged;
the counts stay exact. Ends with the full loop through the fake-sms stand-in on a real socket."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.app import create_app
from dispatcher.api.keys import ENGINE, SESSIONS, SETTINGS
from dispatcher.api.routes.hooks import inbound_url, open_pixel_url, status_callback_url, twiml
from dispatcher.channels.base import OutboundSms
from dispatcher.channels.fake_sms import FakeSmsConfig, start_fake_sms
from dispatcher.channels.twilio_http import API_VERSION, SIGNATURE_HEADER, TwilioHttpChannel, sign
from dispatcher.core.inbound import EMAIL_SIGNATURE_HEADER, email_signature
from dispatcher.core.opens import PIXEL_GIF
from dispatcher.pipeline.context import WorkerResources, attach
from dispatcher.pipeline.maintenance import apply_early_receipts
from dispatcher.settings import Settings
from dispatcher.storage import ledger
from dispatcher.storage.campaigns import Message
from dispatcher.storage.ledger_rows import Sent
from tests import inbound_seed as seed
from tests.core.test_dsn import GMAIL

ACCOUNT = "AC" + "0" * 32


async def _seed(client: TestClient, **options: Any) -> seed.Seeded:
    async with client.app[SESSIONS].begin() as session:
        return await seed.seed(session, **options)


async def _read(client: TestClient, query: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    async with client.app[SESSIONS]() as session:
        return await query(session)


def _status_form(sid: str, to: str, status: str) -> dict[str, str]:
    """What Twilio posts to a StatusCallback (field set and order as Twilio sends them)."""
    form = {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": to,
        "MessagingServiceSid": "MG" + "1" * 32,
        "MessageSid": sid,
        "AccountSid": ACCOUNT,
        "From": "+15005550006",
        "ApiVersion": API_VERSION,
    }
    if status in {"undelivered", "failed"}:
        form["ErrorCode"] = "30003"
    return form


async def _post_form(
    client: TestClient, path: str, form: dict[str, str], token: str
) -> aiohttp.ClientResponse:
    url = client.app[SETTINGS].public_base_url + path  # what the provider was told, not where we listen
    headers = {SIGNATURE_HEADER: sign(token, url, form)}
    return await client.post(path, data=form, headers=headers)


async def test_status_callbacks_replayed_shuffled_and_forged_count_exactly(client: TestClient) -> None:
    s = await _seed(client, count=12)
    rng = random.Random(11)
    path = f"/hooks/twilio/{s.provider_id}/status"
    outcome = {i: rng.choice(["delivered", "undelivered", "failed"]) for i in range(12)}
    plan = [
        (i, status, seed.TWILIO_TOKEN)
        for i in range(12)
        for status in ("queued", "sent", outcome[i])
        for _ in range(rng.randint(1, 50))
    ]
    forged = [(i, "failed", "not-the-token") for i in range(12) if outcome[i] == "delivered"]
    plan += forged
    rng.shuffle(plan)
    gate = asyncio.Semaphore(8)

    async def post(index: int, status: str, token: str) -> int:
        async with gate:
            response = await _post_form(
                client, path, _status_form(s.sid(index), s.addresses[index], status), token
            )
            if response.status == 403:
                body = await response.json()
                assert body["error"]["code"] == "forbidden"
            return response.status

    statuses = await asyncio.gather(*(post(*item) for item in plan))
    assert statuses.count(403) == len(forged)
    assert set(statuses) <= {204, 403}

    counts = await _read(client, lambda session: seed.kinds(session, s.workspace_id))
    expected: dict[str, int] = {}
    for status in outcome.values():
        expected[status] = expected.get(status, 0) + 1
    assert counts == expected
    states = await _read(client, lambda session: seed.states(session, s.campaign_id))
    for i, status in outcome.items():
        assert states[s.message_ids[i]] == ("delivered" if status == "delivered" else "failed")


async def test_bad_or_missing_signatures_and_unknown_providers(client: TestClient) -> None:
    s = await _seed(client, count=1)
    form = _status_form(s.sid(0), s.addresses[0], "delivered")
    path = f"/hooks/twilio/{s.provider_id}/status"
    missing = await client.post(path, data=form)
    assert missing.status == 403
    assert (await missing.json())["error"]["code"] == "forbidden"
    # signed for the address the request came in on, not the public one: refused
    direct = sign(seed.TWILIO_TOKEN, str(client.make_url(path)), form)
    assert (await client.post(path, data=form, headers={SIGNATURE_HEADER: direct})).status == 403
    assert (await _post_form(client, "/hooks/twilio/999999/status", form, seed.TWILIO_TOKEN)).status == 404
    assert (await _post_form(client, "/hooks/twilio/abc/status", form, seed.TWILIO_TOKEN)).status == 404
    query = f"{path}?attempt=2"  # the query string is part of what Twilio signs
    assert (await _post_form(client, query, form, seed.TWILIO_TOKEN)).status == 204
    states = await _read(client, lambda session: seed.states(session, s.campaign_id))
    assert states == {s.message_ids[0]: "delivered"}


def _reply(sender: str, body: str, sid: str) -> dict[str, str]:
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": "+15005550006",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT,
        "From": sender,
        "ApiVersion": API_VERSION,
    }


async def test_callbacks_before_the_worker_wrote_the_sid_count_once_when_it_lands(client: TestClient) -> None:
    s = await _seed(client, count=3, state="sending")  # with the provider; the ledger has no sid yet
    path = f"/hooks/twilio/{s.provider_id}/status"
    bounce = {**_status_form(s.sid(1), s.addresses[1], "undelivered"), "ErrorCode": "30005"}  # bad number
    forms = [_status_form(s.sid(0), s.addresses[0], "delivered")] * 20 + [bounce] * 20
    random.Random(5).shuffle(forms)

    async def post_all() -> None:
        answers = await asyncio.gather(*(_post_form(client, path, f, seed.TWILIO_TOKEN) for f in forms))
        assert {a.status for a in answers} == {204}

    await post_all()
    assert await _read(client, lambda session: seed.kinds(session, s.workspace_id)) == {}
    async with client.app[SESSIONS].begin() as session:
        await session.execute(
            sa.update(Message).where(Message.campaign_id == s.campaign_id).values(lease_owner="w")
        )
        sent = [Sent(s.message_ids[i], s.sid(i), 1, None) for i in range(3)]
        await ledger.mark_sent(session, sent, owner="w", provider_id=s.provider_id, now=datetime.now(UTC))
    async with aiohttp.ClientSession() as http:
        res = WorkerResources(
            client.app[SETTINGS],
            client.app[ENGINE],
            client.app[SESSIONS],
            http,
            worker_id="t",
            host="h",
            pid=0,
        )
        ctx: dict[str, Any] = {}
        attach(ctx, res)
        assert await apply_early_receipts(ctx) == {"applied": 2, "suppressed": 1, "expired": 0}
        await post_all()  # the same callbacks again, now that the sids are known: nothing more
        assert await apply_early_receipts(ctx) == {"applied": 0, "suppressed": 0, "expired": 0}
    assert await _read(client, lambda session: seed.kinds(session, s.workspace_id)) == {
        "delivered": 1,
        "undelivered": 1,
    }
    states = await _read(client, lambda session: seed.states(session, s.campaign_id))
    assert [states[m] for m in s.message_ids] == ["delivered", "failed", "sent"]
    suppressed = await _read(client, lambda session: seed.suppressions(session, s.workspace_id))
    assert suppressed == [("sms", s.addresses[1], "hard_bounce")]


async def test_stop_answers_once_start_resubscribes(client: TestClient) -> None:
    s = await _seed(client, count=1)
    number, path = s.addresses[0], f"/hooks/twilio/{s.provider_id}/inbound"
    deliveries = [(text, f"SMin{n}") for n, text in enumerate(["STOP", "stop ", "Ｓｔｏｐ", "END."])]
    rng = random.Random(3)
    plan = [item for item in deliveries for _ in range(rng.randint(1, 50))]
    rng.shuffle(plan)
    answers = []
    for text, sid in plan:
        response = await _post_form(client, path, _reply(number, text, sid), seed.TWILIO_TOKEN)
        assert response.status == 200
        assert response.content_type == "text/xml"
        answers.append(await response.text())
    confirmations = [a for a in answers if "<Message>" in a]
    assert len(confirmations) == 1
    assert confirmations[0].startswith(
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>You are unsub'
    )
    assert set(answers) - set(confirmations) == {twiml(None)}
    assert await _read(client, lambda session: seed.suppressions(session, s.workspace_id)) == [
        ("sms", number, "stop")
    ]
    assert await _read(client, lambda session: seed.kinds(session, s.workspace_id)) == {"optout": 4}

    start = await _post_form(client, path, _reply(number, "start", "SMstart"), seed.TWILIO_TOKEN)
    assert "resubscribed" in await start.text()
    assert await _read(client, lambda session: seed.suppressions(session, s.workspace_id)) == []
    helped = await _post_form(client, path, _reply(number, "HELP", "SMhelp"), seed.TWILIO_TOKEN)
    assert "Reply STOP" in await helped.text()
    forged = await _post_form(client, path, _reply(number, "STOP", "SMforged"), "wrong")
    assert forged.status == 403
    assert await _read(client, lambda session: seed.suppressions(session, s.workspace_id)) == []


def test_twiml_escapes() -> None:
    assert (
        twiml("<b>&")
        == '<?xml version="1.0" encoding="UTF-8"?><Response><Message>&lt;b&gt;&amp;</Message></Response>'
    )


async def test_email_events_and_dsn_over_http(client: TestClient) -> None:
    s = await _seed(client, channel="email", count=3)
    key = [f"<dsp-{s.campaign_id}-{m}@shop.example>" for m in s.message_ids]
    bounce = {"event_id": "b1", "type": "bounce", "recipient": s.addresses[0], "message_id": key[0]}
    items = [
        {**bounce, "status": "5.1.1", "diagnostic": "550 5.1.1 unknown", "timestamp": "2026-11-23T10:00:00Z"},
        {"event_id": "d2", "type": "delivered", "recipient": s.addresses[1], "message_id": key[1]},
        {"event_id": "c2", "type": "complaint", "recipient": s.addresses[1], "message_id": key[1]},
    ]  # fmt: skip
    path = f"/hooks/email/{s.provider_id}/events"
    rng = random.Random(5)
    for _ in range(rng.randint(1, 50)):
        rng.shuffle(items)
        body = json.dumps(items).encode()
        headers = {
            EMAIL_SIGNATURE_HEADER: email_signature(seed.WEBHOOK_SECRET, body),
            "Content-Type": "application/json",
        }
        response = await client.post(path, data=body, headers=headers)
        assert response.status == 200, await response.text()
    assert (await response.json())["applied"] == 0  # the last of several repeats is new to nobody
    forged = await client.post(path, data=body, headers={EMAIL_SIGNATURE_HEADER: "sha256=00"})
    assert forged.status == 403

    dsn = GMAIL.replace(b"Gone.User@gmail.com", s.addresses[2].encode()).replace(
        b"dsp-9-1001", f"dsp-{s.campaign_id}-{s.message_ids[2]}".encode()
    )
    dsn_path = f"/hooks/email/{s.provider_id}/dsn"
    for _ in range(3):
        headers = {
            EMAIL_SIGNATURE_HEADER: email_signature(seed.WEBHOOK_SECRET, dsn),
            "Content-Type": "message/rfc822",
        }
        response = await client.post(dsn_path, data=dsn, headers=headers)
        assert response.status == 200
    assert await _read(client, lambda session: seed.kinds(session, s.workspace_id)) == {
        "bounce": 2,
        "delivered": 1,
        "complaint": 1,
    }
    states = await _read(client, lambda session: seed.states(session, s.campaign_id))
    assert [states[m] for m in s.message_ids] == ["failed", "delivered", "failed"]
    suppressed = await _read(client, lambda session: seed.suppressions(session, s.workspace_id))
    assert sorted(suppressed) == sorted(
        [("email", s.addresses[0], "hard_bounce"), ("email", s.addresses[1], "complaint"),
         ("email", s.addresses[2], "hard_bounce")]
    )  # fmt: skip
    sms = await _seed(client, count=1)
    assert (await client.post(f"/hooks/email/{sms.provider_id}/events", data=body)).status == 404


async def test_open_pixel_always_a_gif(client: TestClient) -> None:
    s = await _seed(client, channel="email", count=1)
    settings = client.app[SETTINGS]
    url = open_pixel_url(settings.public_base_url, settings.secret_key, s.workspace_id, s.message_ids[0])
    path = url.removeprefix(settings.public_base_url)
    person = {"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"}
    for headers in (person, person, {"User-Agent": "Mimecast"}, person):
        response = await client.get(path, headers=headers)
        assert response.status == 200
        assert response.content_type == "image/gif"
        assert await response.read() == PIXEL_GIF
    for junk in ("/o/nonsense.gif", "/o/1.2.3.gif", "/o/" + "x" * 300 + ".gif"):
        response = await client.get(junk)
        assert (response.status, await response.read()) == (200, PIXEL_GIF)
    opens = await _read(client, lambda session: seed.events(session, s.workspace_id, "open"))
    assert sorted(e.machine for e in opens) == [False, True]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for(done: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(400):
        if await done():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


async def test_full_loop_through_the_fake_sms_stand_in(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings
) -> None:
    """Every delivered message is answered (STOP, HELP or a reply): each callback crosses a real socket."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app_client = await aiohttp_client(
        create_app(settings.with_overrides(public_base_url=base)), server_kwargs={"port": port}
    )
    token = FakeSmsConfig().auth_token
    s = await _seed(app_client, count=30, state="sending", provider_config={"auth_token": token})
    stand_in = FakeSmsConfig(
        seed=4,
        delivery_rate=0.7,
        reply_rate=1.0,
        reply_texts=("STOP", "yes!", "HELP"),
        callback_latency=1.0,  # the ledger learns the provider's ids first, as the send job records them
        inbound_url=inbound_url(base, s.provider_id),
    )
    runner, sms_url = await start_fake_sms(stand_in)
    try:
        async with aiohttp.ClientSession() as http:
            channel = TwilioHttpChannel(
                base_url=sms_url, account_sid=stand_in.account_sid, auth_token=token, session=http
            )
            callback = status_callback_url(base, s.provider_id)
            batch = [
                OutboundSms(mid, to, "+15005550006", "20% off. Reply STOP to opt out", f"k{mid}", callback)
                for mid, to in zip(s.message_ids, s.addresses, strict=True)
            ]
            outcomes = await channel.send_batch(batch)
            await _mark_sent(app_client, {o.message_id: o.provider_message_id or "" for o in outcomes})

            async def settled() -> bool:
                stats = await _get(http, f"{sms_url}/_stub/stats")
                records = (await _get(http, f"{sms_url}/_stub/messages"))["messages"]
                delivered = sum(1 for r in records if r["status"] == "delivered")
                callbacks = stats.get("callbacks_sent", 0) + stats.get("callbacks_failed", 0)
                answered = stats.get("replies_sent", 0) + stats.get("replies_failed", 0)
                return callbacks == 3 * 30 and answered == delivered

            await _wait_for(settled, "the stand-in's callbacks and replies")
            stats = await _get(http, f"{sms_url}/_stub/stats")
            records = (await _get(http, f"{sms_url}/_stub/messages"))["messages"]
            replies = (await _get(http, f"{sms_url}/_stub/replies"))["replies"]
    finally:
        await runner.cleanup()
    assert (stats.get("callbacks_failed", 0), stats.get("replies_failed", 0)) == (0, 0)
    delivered = sum(1 for r in records if r["status"] == "delivered")
    assert 0 < delivered < 30
    counts = await _read(app_client, lambda session: seed.kinds(session, s.workspace_id))
    stops = [r for r in replies if r["body"] == "STOP"]
    assert counts == {
        key: value
        for key, value in {
            "delivered": delivered,
            "undelivered": 30 - delivered,
            "optout": len(stops),
            "help": sum(1 for r in replies if r["body"] == "HELP"),
            "reply": sum(1 for r in replies if r["body"] == "yes!"),
        }.items()
        if value
    }
    suppressed = await _read(app_client, lambda session: seed.suppressions(session, s.workspace_id))
    assert sorted(a for _, a, _ in suppressed) == sorted(r["from"] for r in stops)


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json()


async def _mark_sent(client: TestClient, sids: dict[int, str]) -> None:
    async with client.app[SESSIONS].begin() as session:
        for mid, sid in sids.items():
            row = await seed.message(session, mid)
            row.state, row.provider_message_id = "sent", sid
