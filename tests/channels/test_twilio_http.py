"""TwilioHttpChannel against the local stand-in over real sockets, plus the pure classification tables."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dispatcher.channels.base import SUPPRESSING_REASONS, OutboundSms, SendOutcome, SmsChannel
from dispatcher.channels.fake_sms import FakeSmsConfig, start_fake_sms
from dispatcher.channels.twilio_http import (
    TwilioHttpChannel,
    classify_response,
    parse_retry_after,
    reason_for_error_code,
    sign,
    verify_signature,
)
from dispatcher.errors import PermanentProviderError, TransientProviderError

StartStub = Callable[..., Awaitable[str]]

# The worked example of Twilio's "Validating requests" documentation.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


@pytest.fixture
async def start_stub() -> AsyncIterator[StartStub]:
    runners: list[web.AppRunner] = []

    async def start(**config: Any) -> str:
        runner, url = await start_fake_sms(FakeSmsConfig(seed=5, **config))
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_channel(url: str, session: aiohttp.ClientSession, **options: Any) -> TwilioHttpChannel:
    config = FakeSmsConfig()
    return TwilioHttpChannel(
        base_url=url,
        account_sid=options.pop("account_sid", config.account_sid),
        auth_token=options.pop("auth_token", config.auth_token),
        session=session,
        **options,
    )


def sms(message_id: int = 1, to: str = "+14155550100", key: str | None = None, **extra: Any) -> OutboundSms:
    return OutboundSms(
        message_id=message_id,
        to=to,
        sender="+14155559999",
        body=extra.pop("body", f"Hello number {message_id}"),
        idempotency_key=key or f"key-{message_id}",
        **extra,
    )


async def stub_get(session: aiohttp.ClientSession, url: str, path: str) -> Any:
    async with session.get(url + path) as response:
        assert response.status == 200
        return await response.json()


# ---------------------------------------------------------------------------------------------- signatures


def test_twilio_documented_example_vector() -> None:
    assert sign(DOC_TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    assert verify_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE)


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        pytest.param(
            DOC_TOKEN, DOC_URL, {**DOC_PARAMS, "Digits": "9999"}, DOC_SIGNATURE, id="tampered-value"
        ),
        pytest.param(DOC_TOKEN, DOC_URL, {**DOC_PARAMS, "Extra": "1"}, DOC_SIGNATURE, id="added-param"),
        pytest.param(DOC_TOKEN, DOC_URL.replace("bar=2", "bar=3"), DOC_PARAMS, DOC_SIGNATURE, id="query"),
        pytest.param(DOC_TOKEN, "https://evil.example/myapp.php", DOC_PARAMS, DOC_SIGNATURE, id="host"),
        pytest.param("54321", DOC_URL, DOC_PARAMS, DOC_SIGNATURE, id="other-token"),
        pytest.param("", DOC_URL, DOC_PARAMS, DOC_SIGNATURE, id="empty-token"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, None, id="no-signature"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, "", id="empty-signature"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE[:-1], id="truncated"),
        pytest.param(DOC_TOKEN, DOC_URL, DOC_PARAMS, "ünïcode", id="non-ascii-signature"),
    ],
)
def test_signature_rejects(token: str, url: str, params: dict[str, str], signature: str | None) -> None:
    assert not verify_signature(token, url, params, signature)


def test_signature_ignores_parameter_order_and_accepts_pairs() -> None:
    pairs = list(reversed(DOC_PARAMS.items()))
    assert sign(DOC_TOKEN, DOC_URL, pairs) == DOC_SIGNATURE
    assert verify_signature(DOC_TOKEN, DOC_URL, pairs, DOC_SIGNATURE)


def test_signature_covers_every_value_of_a_repeated_key() -> None:
    one = sign("t", "https://x.test/hook", [("A", "1"), ("A", "2")])
    assert one == sign("t", "https://x.test/hook", [("A", "2"), ("A", "1")])
    assert one != sign("t", "https://x.test/hook", [("A", "1")])


def test_signature_without_params_signs_the_url() -> None:
    assert verify_signature("t", "https://x.test/a", {}, sign("t", "https://x.test/a"))
    assert not verify_signature("t", "https://x.test/b", {}, sign("t", "https://x.test/a"))


# --------------------------------------------------------------------------------------- pure classifying

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def _error(code: int) -> bytes:
    return b'{"code": %d, "message": "no", "status": 400}' % code


@pytest.mark.parametrize(
    ("status", "retry_after", "raw", "outcome"),
    [
        (201, None, b'{"sid": "SM1", "num_segments": "2"}', ("sent", None, False, None)),
        (201, None, b"{}", ("transient", "bad_response", True, None)),
        (200, None, b"<html>", ("transient", "bad_response", True, None)),
        (429, "4", b'{"code": 20429}', ("transient", "throttled", False, 4.0)),
        (500, None, b"oops", ("transient", "server_error", False, None)),
        (503, "2", b"", ("transient", "server_error", False, 2.0)),
        (408, None, b"", ("transient", "timeout", False, None)),
        (401, None, _error(20003), ("transient", "provider_config", False, None)),
        (404, None, _error(20404), ("transient", "provider_config", False, None)),
        (400, None, _error(21211), ("permanent", "invalid_number", False, None)),
        (400, None, _error(21610), ("permanent", "unsubscribed", False, None)),
        (400, None, _error(21614), ("permanent", "not_mobile", False, None)),
        (400, None, _error(21612), ("permanent", "unreachable", False, None)),
        (400, None, _error(21999), ("permanent", "rejected", False, None)),
        (422, None, b"not json", ("permanent", "rejected", False, None)),
    ],
)
def test_classify_response(
    status: int, retry_after: str | None, raw: bytes, outcome: tuple[str, str | None, bool, float | None]
) -> None:
    result = classify_response(9, status, retry_after, raw)
    assert (result.status, result.reason, result.possible_duplicate, result.retry_after) == outcome
    assert result.message_id == 9


def test_accepted_response_carries_sid_and_segments() -> None:
    result = classify_response(1, 201, None, b'{"sid": "SMabc", "num_segments": "3"}')
    assert (result.provider_message_id, result.segments) == ("SMabc", 3)


@pytest.mark.parametrize(
    ("code", "reason"), [(21211, "invalid_number"), ("30006", "not_mobile"), ("x", "rejected")]
)
def test_reason_for_error_code(code: object, reason: str) -> None:
    assert reason_for_error_code(code) == reason


def test_outcome_maps_onto_the_error_tree() -> None:
    throttled = SendOutcome(1, "transient", retry_after=3.0, reason="throttled").as_error()
    assert isinstance(throttled, TransientProviderError)
    assert throttled.retry_after == 3.0
    invalid = SendOutcome(1, "permanent", reason="invalid_number")
    error = invalid.as_error()
    assert isinstance(error, PermanentProviderError)
    assert error.reason == "invalid_number"
    assert invalid.suppresses
    assert not SendOutcome(1, "permanent", reason="rejected").suppresses
    assert SendOutcome(1, "sent").as_error() is None
    assert {"invalid_number", "unsubscribed", "not_mobile"} <= SUPPRESSING_REASONS
    assert {"hard_bounce", "invalid_address", "complaint"} <= SUPPRESSING_REASONS


# ------------------------------------------------------------------------------------ over a real socket


async def test_round_trip(start_stub: StartStub, session: aiohttp.ClientSession) -> None:
    url = await start_stub()
    channel: SmsChannel = make_channel(url, session)
    message = sms(1, body="Hi ✓", status_callback="http://127.0.0.1:9/status")
    [outcome] = await channel.send_batch([message])
    assert outcome.status == "sent"
    assert outcome.provider_message_id is not None
    assert outcome.provider_message_id.startswith("SM")
    assert outcome.segments == 1
    [recorded] = (await stub_get(session, url, "/_stub/messages"))["messages"]
    assert recorded["sid"] == outcome.provider_message_id
    assert (recorded["to"], recorded["from"], recorded["body"]) == (message.to, message.sender, "Hi ✓")
    assert recorded["idempotency_token"] == "key-1"
    assert recorded["status_callback"] == "http://127.0.0.1:9/status"
    await channel.close()


async def test_same_idempotency_key_is_recorded_once(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub()
    channel = make_channel(url, session, supports_idempotency=True)
    first = await channel.send_batch([sms(1, key="attempt-1")])
    again = await channel.send_batch([sms(1, key="attempt-1"), sms(2, key="attempt-2")])
    assert first[0].provider_message_id == again[0].provider_message_id
    assert again[1].provider_message_id != again[0].provider_message_id
    stats = await stub_get(session, url, "/_stub/stats")
    assert (stats["messages"], stats["deduplicated"], stats["unique_tokens"]) == (2, 1, 2)


async def test_throttled_is_transient_with_retry_after(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub(rate_429=1.0, retry_after=7)
    [outcome] = await make_channel(url, session).send_batch([sms()])
    assert (outcome.status, outcome.reason, outcome.retry_after) == ("transient", "throttled", 7.0)
    assert outcome.error_code == "20429"
    assert not outcome.possible_duplicate
    assert (await stub_get(session, url, "/_stub/stats"))["messages"] == 0


@pytest.mark.parametrize("fault", ["rate_500", "rate_503"])
async def test_server_errors_are_transient(
    start_stub: StartStub, session: aiohttp.ClientSession, fault: str
) -> None:
    url = await start_stub(**{fault: 1.0})
    [outcome] = await make_channel(url, session).send_batch([sms()])
    assert (outcome.status, outcome.reason, outcome.possible_duplicate) == (
        "transient",
        "server_error",
        False,
    )


@pytest.mark.parametrize(
    ("to", "reason", "code"),
    [
        ("12345", "invalid_number", "21211"),
        ("+15005550001", "invalid_number", "21211"),
        ("+15005550004", "unsubscribed", "21610"),
        ("+15005550009", "not_mobile", "21614"),
        ("+15005550003", "region_not_enabled", "21408"),
    ],
)
async def test_refused_numbers_are_permanent(
    start_stub: StartStub, session: aiohttp.ClientSession, to: str, reason: str, code: str
) -> None:
    url = await start_stub()
    [outcome] = await make_channel(url, session).send_batch([sms(to=to)])
    assert (outcome.status, outcome.reason, outcome.error_code) == ("permanent", reason, code)
    assert outcome.error_detail
    assert (await stub_get(session, url, "/_stub/stats"))["messages"] == 0


async def test_timeout_after_acceptance_is_a_possible_duplicate(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub(rate_timeout_after=1.0, timeout_sleep=5.0)
    channel = make_channel(url, session, timeout=0.3, supports_idempotency=True)
    [outcome] = await channel.send_batch([sms(key="ambiguous")])
    assert (outcome.status, outcome.reason, outcome.possible_duplicate) == ("transient", "timeout", True)
    assert (await stub_get(session, url, "/_stub/stats"))["messages"] == 1
    # the resend the engine may make with the same key is absorbed by the provider
    [again] = await channel.send_batch([sms(key="ambiguous")])
    assert again.possible_duplicate
    stats = await stub_get(session, url, "/_stub/stats")
    assert (stats["messages"], stats["deduplicated"]) == (1, 1)


async def test_timeout_before_acceptance_looks_the_same_to_the_client(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub(rate_timeout_before=1.0, timeout_sleep=5.0)
    [outcome] = await make_channel(url, session, timeout=0.3).send_batch([sms()])
    assert (outcome.status, outcome.possible_duplicate) == ("transient", True)
    assert (await stub_get(session, url, "/_stub/stats"))["messages"] == 0


async def test_refused_connection_is_transient_and_not_a_duplicate(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but never listening: connections are refused
        channel = make_channel(f"http://127.0.0.1:{port}", session)
        [outcome] = await channel.send_batch([sms()])
    assert (outcome.status, outcome.reason, outcome.possible_duplicate) == ("transient", "connection", False)


async def test_wrong_credentials_are_a_configuration_problem(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub()
    [outcome] = await make_channel(url, session, auth_token="wrong").send_batch([sms()])
    assert (outcome.status, outcome.reason, outcome.error_code) == ("transient", "provider_config", "20003")


async def test_batch_of_500_is_recorded_exactly_once(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub(response_latency=0.005)
    channel = make_channel(url, session, concurrency=50, supports_idempotency=True)
    batch = [sms(i, to=f"+1415555{i:04d}") for i in range(500)]
    outcomes = await channel.send_batch(batch)
    assert [o.message_id for o in outcomes] == list(range(500))
    assert all(o.status == "sent" for o in outcomes)
    assert len({o.provider_message_id for o in outcomes}) == 500
    stats = await stub_get(session, url, "/_stub/stats")
    assert stats["messages"] == stats["unique_tokens"] == stats["unique_recipients"] == 500
    assert stats["recipients_with_duplicates"] == 0
    assert 1 < stats["max_in_flight"] <= 50
    recorded = (await stub_get(session, url, "/_stub/messages?limit=1000"))["messages"]
    assert sorted(r["to"] for r in recorded) == sorted(m.to for m in batch)


async def test_concurrency_is_bounded_per_channel_across_batches(
    start_stub: StartStub, session: aiohttp.ClientSession
) -> None:
    url = await start_stub(response_latency=0.01)
    channel = make_channel(url, session, concurrency=5)
    batches = [[sms(b * 100 + i, key=f"b{b}-{i}") for i in range(20)] for b in range(3)]
    results = await asyncio.gather(*(channel.send_batch(batch) for batch in batches))
    assert all(o.status == "sent" for outcomes in results for o in outcomes)
    stats = await stub_get(session, url, "/_stub/stats")
    assert stats["messages"] == 60
    assert 1 < stats["max_in_flight"] <= 5


async def test_empty_batch(session: aiohttp.ClientSession) -> None:
    assert await make_channel("http://127.0.0.1:9", session).send_batch([]) == []


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        TwilioHttpChannel(
            base_url="http://x",
            account_sid="AC",
            auth_token="t",
            session=None,
            concurrency=0,  # type: ignore[arg-type]
        )
