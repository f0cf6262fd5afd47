"""The local SMS stand-in over HTTP: Twilio-style validation, stub endpoints, signed callbacks, replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dispatcher.channels.base import OutboundSms
from dispatcher.channels.fake_sms import FakeSmsConfig, start_fake_sms
from dispatcher.channels.twilio_http import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TwilioHttpChannel,
    basic_auth_header,
    messages_path,
    verify_signature,
)
from dispatcher.errors import InputError

CONFIG = FakeSmsConfig()
AUTH = {"Authorization": basic_auth_header(CONFIG.account_sid, CONFIG.auth_token)}
GOOD_FORM = {"To": "+14155550100", "From": "+14155559999", "Body": "Hello"}

StartStub = Callable[..., Awaitable[str]]


@dataclass
class Received:
    """What a test webhook server got: (path, form, signature valid?) in arrival order."""

    calls: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def forms(self, path: str) -> list[dict[str, str]]:
        return [form for p, form, _ in self.calls if p == path]


@pytest.fixture
async def start_stub() -> AsyncIterator[StartStub]:
    runners: list[web.BaseRunner] = []

    async def start(**config: Any) -> str:
        runner, url = await start_fake_sms(FakeSmsConfig(**{"seed": 11, **config}))
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def webhooks() -> AsyncIterator[tuple[TestServer, Received]]:
    """A small real server standing for dispatcher's webhook endpoints; checks each signature itself."""
    received = Received()

    async def hook(request: web.Request) -> web.Response:
        form = {key: value for key, value in (await request.post()).items() if isinstance(value, str)}
        signed = verify_signature(
            CONFIG.auth_token, str(request.url), form, request.headers.get(SIGNATURE_HEADER)
        )
        received.calls.append((request.path, form, signed))
        if len(received.calls) >= received.expected:
            received.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", hook)
    app.router.add_post("/inbound", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, received
    await server.close()


async def wait_for(received: Received, count: int) -> None:
    received.expected = count
    if len(received.calls) < count:
        received.arrived.clear()
        await asyncio.wait_for(received.arrived.wait(), timeout=10)


async def post_message(
    session: aiohttp.ClientSession, url: str, form: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    target = url + messages_path(CONFIG.account_sid)
    async with session.post(target, data=form, headers=headers if headers is not None else AUTH) as response:
        return response.status, await response.json()


async def get_json(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> Any:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.json()


def channel(url: str, session: aiohttp.ClientSession) -> TwilioHttpChannel:
    return TwilioHttpChannel(
        base_url=url, account_sid=CONFIG.account_sid, auth_token=CONFIG.auth_token, session=session
    )


# -------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"To": None}, 21604),
        ({"To": ""}, 21604),
        ({"From": None}, 21603),
        ({"Body": None}, 21602),
        ({"Body": "x" * 1601}, 21617),
        ({"StatusCallback": "ftp://example.test/cb"}, 21609),
        ({"To": "4155550100"}, 21211),
        ({"To": "+0123456789"}, 21211),
        ({"To": "+1415555010a"}, 21211),
        ({"To": "+15005550002"}, 21612),
    ],
)
async def test_invalid_requests_get_twilio_errors_and_are_not_recorded(
    start_stub: StartStub, session: aiohttp.ClientSession, change: dict[str, str | None], code: int
) -> None:
    url = await start_stub()
    form = {k: v for k, v in {**GOOD_FORM, **change}.items() if v is not None}
    status, body = await post_message(session, url, form)
    assert status == 400
    assert body["code"] == code
    assert body["status"] == 400
    assert body["message"]
    assert body["more_info"].endswith(str(code))
    _, stats = await get_json(session, url + "/_stub/stats")
    assert (stats["messages"], stats["rejected"]) == (0, 1)


async def test_a_valid_request_is_answered_like_twilio(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub()
    body = "A long text. " * 20  # 260 GSM-7 characters: two segments
    status, answer = await post_message(session, url, {**GOOD_FORM, "Body": body})
    assert status == 201
    assert answer["sid"].startswith("SM")
    assert len(answer["sid"]) == 34
    assert (answer["status"], answer["num_segments"], answer["to"]) == ("queued", "2", GOOD_FORM["To"])
    assert answer["account_sid"] == CONFIG.account_sid
    status, fetched = await get_json(session, url + answer["uri"], AUTH)
    assert (status, fetched["sid"]) == (200, answer["sid"])
    status, missing = await get_json(
        session, url + answer["uri"].replace(answer["sid"], "SM" + "f" * 32), AUTH
    )
    assert (status, missing["code"]) == (404, 20404)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": basic_auth_header(CONFIG.account_sid, "wrong")},
        {"Authorization": "Bearer " + CONFIG.auth_token},
    ],
)
async def test_credentials_are_checked(
    start_stub: StartStub, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    url = await start_stub()
    status, body = await post_message(session, url, GOOD_FORM, headers)
    assert (status, body["code"]) == (401, 20003)
    _, stats = await get_json(session, url + "/_stub/stats")
    assert stats["messages"] == 0


async def test_another_account_is_not_found(start_stub: StartStub, session: aiohttp.ClientSession) -> None:
    url = await start_stub()
    target = url + messages_path("AC" + "1" * 32)
    async with session.post(target, data=GOOD_FORM, headers=AUTH) as response:
        assert response.status == 404
        assert (await response.json())["code"] == 20404


# ------------------------------------------------------------------------------------------ stub endpoints


async def test_messages_page_by_sequence_and_filter_by_recipient(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub()
    for i in range(5):
        to = "+14155550100" if i % 2 else "+14155550200"
        status, _ = await post_message(
            session, url, {**GOOD_FORM, "To": to}, {**AUTH, IDEMPOTENCY_HEADER: f"k{i}"}
        )
        assert status == 201
    _, page = await get_json(session, url + "/_stub/messages?since=0&limit=2")
    assert [m["seq"] for m in page["messages"]] == [1, 2]
    _, rest = await get_json(session, url + f"/_stub/messages?since={page['next']}")
    assert [m["seq"] for m in rest["messages"]] == [3, 4, 5]
    _, filtered = await get_json(session, url + "/_stub/messages?to=%2B14155550100")
    assert [m["idempotency_token"] for m in filtered["messages"]] == ["k1", "k3"]
    _, stats = await get_json(session, url + "/_stub/stats")
    assert (stats["unique_recipients"], stats["recipients_with_duplicates"], stats["max_per_recipient"]) == (
        2,
        2,
        3,
    )
    async with session.get(url + "/_stub/messages?since=soon") as response:
        assert response.status == 400
    async with session.post(url + "/_stub/reset") as response:
        assert response.status == 200
    _, stats = await get_json(session, url + "/_stub/stats")
    assert stats["messages"] == 0


async def test_same_seed_gives_the_same_faults(start_stub: StartStub, session: aiohttp.ClientSession) -> None:
    async def statuses(url: str) -> list[int]:
        return [(await post_message(session, url, GOOD_FORM))[0] for _ in range(30)]

    first = await statuses(await start_stub(seed=3, rate_500=0.3, rate_429=0.3))
    second = await statuses(await start_stub(seed=3, rate_500=0.3, rate_429=0.3))
    assert first == second
    assert {201, 429, 500} == set(first)


# ------------------------------------------------------------------------------- callbacks and replies


@pytest.mark.parametrize(
    ("delivery_rate", "failure_status", "expected"),
    [
        (1.0, "undelivered", ["queued", "sent", "delivered"]),
        (0.0, "undelivered", ["queued", "sent", "undelivered"]),
        (0.0, "failed", ["queued", "failed"]),
    ],
)
async def test_status_callbacks_arrive_signed_and_in_order(
    start_stub: StartStub,
    session: aiohttp.ClientSession,
    webhooks: tuple[TestServer, Received],
    delivery_rate: float,
    failure_status: str,
    expected: list[str],
) -> None:
    server, received = webhooks
    url = await start_stub(delivery_rate=delivery_rate, failure_status=failure_status, callback_latency=0.01)
    callback = str(server.make_url("/status"))
    batch = [
        OutboundSms(i, f"+1415555020{i}", "+14155559999", "Hi", f"cb-{i}", status_callback=callback)
        for i in range(3)
    ]
    outcomes = await channel(url, session).send_batch(batch)
    await wait_for(received, 3 * len(expected))
    assert all(signed for _, _, signed in received.calls)
    for outcome, message in zip(outcomes, batch, strict=True):
        forms = [f for f in received.forms("/status") if f["MessageSid"] == outcome.provider_message_id]
        assert [f["MessageStatus"] for f in forms] == expected
        assert all(f["To"] == message.to and f["AccountSid"] == CONFIG.account_sid for f in forms)
        assert ("ErrorCode" in forms[-1]) == (delivery_rate == 0.0)
    _, recorded = await get_json(session, url + "/_stub/messages")
    assert {m["status"] for m in recorded["messages"]} == {expected[-1]}
    _, stats = await get_json(session, url + "/_stub/stats")
    assert stats["callbacks_sent"] == 3 * len(expected)


async def test_replies_are_posted_signed_to_the_inbound_webhook(
    start_stub: StartStub, session: aiohttp.ClientSession, webhooks: tuple[TestServer, Received]
) -> None:
    server, received = webhooks
    url = await start_stub(
        inbound_url=str(server.make_url("/inbound")), reply_rate=1.0, reply_texts=("STOP",)
    )
    [outcome] = await channel(url, session).send_batch(
        [OutboundSms(1, "+14155550300", "+14155559999", "Hi", "r-1")]
    )
    await wait_for(received, 1)
    [(path, form, signed)] = received.calls
    assert (path, signed) == ("/inbound", True)
    assert (form["From"], form["To"], form["Body"]) == ("+14155550300", "+14155559999", "STOP")
    assert form["MessageSid"].startswith("SM")
    assert form["MessageSid"] != outcome.provider_message_id
    _, replies = await get_json(session, url + "/_stub/replies")
    assert replies["replies"] == [
        {
            "sid": form["MessageSid"],
            "from": "+14155550300",
            "to": "+14155559999",
            "body": "STOP",
            "in_reply_to": outcome.provider_message_id,
        }
    ]


async def test_an_unreachable_callback_is_counted_not_fatal(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub(intermediate_callbacks=False)
    message = OutboundSms(
        1, "+14155550400", "+1415555999", "Hi", "u-1", status_callback="http://127.0.0.1:9/x"
    )
    [outcome] = await channel(url, session).send_batch([message])
    assert outcome.status == "sent"
    for _ in range(200):
        _, stats = await get_json(session, url + "/_stub/stats")
        if stats.get("callbacks_failed"):
            break
        await asyncio.sleep(0.02)
    assert stats["callbacks_failed"] == 1


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "options",
    [
        {"delivery_rate": 1.5},
        {"rate_429": -0.1},
        {"rate_500": 0.6, "rate_503": 0.6},
        {"reply_rate": 0.5, "reply_texts": ()},
        {"callback_latency": -1},
        {"callback_concurrency": 0},
    ],
)
def test_config_rejects_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        FakeSmsConfig(**options)


@pytest.mark.parametrize(
    ("draw", "fault"),
    [
        (0.0, "429"),
        (0.099, "429"),
        (0.1, "500"),
        (0.35, "503"),
        (0.45, "timeout_before"),
        (0.55, "timeout_after"),
    ],
)
def test_fault_buckets(draw: float, fault: str | None) -> None:
    config = FakeSmsConfig(
        rate_429=0.1, rate_500=0.2, rate_503=0.1, rate_timeout_before=0.1, rate_timeout_after=0.1
    )
    assert config.choose_fault(draw) == fault
    assert config.choose_fault(0.6) is None
    assert FakeSmsConfig().choose_fault(0.0) is None


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/nowhere", 404, None),
        ("GET", f"{messages_path(CONFIG.account_sid)}", 405, "POST"),
        ("DELETE", "/2010-04-01/Accounts/AC1/Messages/SM1.json", 405, "GET"),
        ("POST", "/_stub/stats", 405, "GET"),
        ("GET", "/_stub/reset", 405, "POST"),
        ("HEAD", "/_stub/stats", 200, None),
        ("GET", "/_stub/messages?limit=ten", 400, None),
    ],
)
async def test_paths_and_methods_it_does_not_serve_are_refused_plainly(
    start_stub: StartStub,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    status: int,
    allow: str | None,
) -> None:
    url = await start_stub()
    async with session.request(method, url + path, headers=AUTH) as response:
        assert response.status == status
        assert response.headers.get("Allow") == allow
        if status == 404:
            assert (await response.json())["code"] == 20404
