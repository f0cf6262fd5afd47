"""The SMTP sink stand-in: what it stores and counts, the errors it injects, its HTTP side, its CLI runner."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import socket
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from dispatcher.channels.fake_smtp import FakeSmtpConfig, serve_fake_smtp, start_fake_smtp
from dispatcher.errors import InputError

MESSAGE = (
    b"From: news@shop.example\r\nTo: {to}\r\nSubject: Hi\r\n"
    b"Message-ID: <{mid}@shop.example>\r\n\r\nHello\r\n.\r\n"
)


def raw(to: str, mid: str = "m1") -> bytes:
    return MESSAGE.replace(b"{to}", to.encode()).replace(b"{mid}", mid.encode())


async def send(port: int, to: str, mid: str = "m1", **login: Any) -> aiosmtplib.SMTPResponse:
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, local_hostname="test.localhost", start_tls=False, **login
    ) as client:
        await client.mail("b@shop.example")
        await client.rcpt(to)
        return await client.data(raw(to, mid))


async def test_messages_are_stored_in_order_with_envelopes_and_counted_per_recipient() -> None:
    async with start_fake_smtp() as sink:
        reply = await send(sink.port, "ann@example.org", "m1")
        await send(sink.port, "bob@example.org", "m2")
        await send(sink.port, "ANN@example.org", "m1")  # the same message again: a duplicate
    assert reply.code == 250
    assert reply.message.endswith(sink.store.messages[0].queue_id)
    first = sink.store.messages[0]
    assert (first.seq, first.mail_from, first.rcpt_tos, first.message_id) == (
        1, "b@shop.example", ["ann@example.org"], "<m1@shop.example>",
    )  # fmt: skip
    assert first.data is not None
    parsed = email.message_from_bytes(first.data, policy=email.policy.default)
    assert parsed.get_content().replace("\r\n", "\n") == "Hello\n.\n"  # dot-stuffing undone
    stats = sink.store.stats()
    assert stats["messages"] == 3
    assert stats["unique_recipients"] == 2
    assert stats["recipients_with_duplicates"] == 1
    assert stats["max_per_recipient"] == 2
    assert stats["duplicate_message_ids"] == 1
    assert stats["connections"] == 3


async def test_bounce_addresses_always_get_a_hard_bounce() -> None:
    async with start_fake_smtp() as sink:
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await send(sink.port, "bounce.ann@example.org")
    assert refused.value.code == 550
    assert "5.1.1" in refused.value.message
    assert sink.store.counters["rcpt_bounced"] == 1
    assert sink.store.stats()["messages"] == 0


async def test_injected_rcpt_errors_follow_the_rates_reproducibly() -> None:
    async def run() -> list[int]:
        codes = []
        config = FakeSmtpConfig(seed=3, rate_4xx=0.2, rate_5xx=0.3, rcpt_5xx="553 5.1.3 Bad address")
        async with start_fake_smtp(config) as sink:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, local_hostname="t") as client:
                for i in range(200):
                    try:
                        await client.sendmail(
                            "b@shop.example", [f"u{i}@example.org"], raw(f"u{i}@example.org")
                        )
                        codes.append(250)
                    except aiosmtplib.SMTPRecipientsRefused as exc:
                        codes.append(exc.recipients[0].code)
            assert sink.store.stats()["messages"] == codes.count(250)
            assert sink.store.counters["rcpt_4xx"] == codes.count(451)
            assert sink.store.counters["rcpt_5xx"] == codes.count(553)
        return codes

    first = await run()
    assert first == await run()  # same seed, same answers
    assert set(first) == {250, 451, 553}
    assert 20 <= first.count(451) <= 60
    assert 35 <= first.count(553) <= 85


async def test_rejected_data_is_not_stored_and_dropped_data_is() -> None:
    async with start_fake_smtp(FakeSmtpConfig(rate_reject_data=1.0)) as sink:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(sink.port, "ann@example.org")
    assert refused.value.code == 554
    assert sink.store.stats()["messages"] == 0
    async with start_fake_smtp(FakeSmtpConfig(rate_drop_after_data=1.0)) as sink:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(sink.port, "ann@example.org")
    assert sink.store.stats()["messages"] == 1
    assert sink.store.counters["dropped_after_data"] == 1


async def test_auth_is_required_when_configured() -> None:
    config = FakeSmtpConfig(username="shop", password="pw")
    async with start_fake_smtp(config) as sink:
        assert (await send(sink.port, "ann@example.org", username="shop", password="pw")).code == 250
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await send(sink.port, "ann@example.org", username="shop", password="wrong")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await send(sink.port, "ann@example.org")
    assert refused.value.code == 530
    assert sink.store.counters["auth_ok"] == 1
    assert sink.store.counters["auth_failed"] >= 1  # the client tries each mechanism offered
    assert sink.store.stats()["messages"] == 1


async def test_maildir_gets_a_copy_of_every_message(tmp_path: Path) -> None:
    config = FakeSmtpConfig(maildir=str(tmp_path / "mail"), keep_data=False)
    async with start_fake_smtp(config) as sink:
        await send(sink.port, "ann@example.org", "m1")
        await send(sink.port, "bob@example.org", "m2")
    assert [m.data for m in sink.store.messages] == [None, None]
    stored = sorted(str(m["Message-ID"]) for m in mailbox.Maildir(tmp_path / "mail"))
    assert stored == ["<m1@shop.example>", "<m2@shop.example>"]


async def test_http_side_serves_stats_messages_and_reset() -> None:
    async with start_fake_smtp(http_port=0) as sink, aiohttp.ClientSession() as http:
        assert sink.http_url is not None
        for i in range(3):
            await send(sink.port, f"u{i}@example.org", f"m{i}")
        async with http.get(f"{sink.http_url}/_stub/stats") as response:
            assert (await response.json())["messages"] == 3
        async with http.get(
            f"{sink.http_url}/_stub/messages", params={"since": "1", "limit": "1"}
        ) as response:
            page = await response.json()
        assert [m["rcpt_tos"] for m in page["messages"]] == [["u1@example.org"]]
        assert page["next"] == 2
        assert "data" not in page["messages"][0]
        params = {"to": "U2@example.org", "data": "1"}
        async with http.get(f"{sink.http_url}/_stub/messages", params=params) as response:
            found = (await response.json())["messages"]
        assert len(found) == 1
        assert "Message-ID: <m2@shop.example>" in found[0]["data"]
        async with http.get(f"{sink.http_url}/_stub/messages", params={"since": "x"}) as response:
            assert response.status == 400
        async with http.post(f"{sink.http_url}/_stub/reset") as response:
            assert response.status == 200
        async with http.get(f"{sink.http_url}/_stub/stats") as response:
            assert (await response.json())["messages"] == 0


async def test_serve_runs_until_cancelled() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(serve_fake_smtp("127.0.0.1", port, None, FakeSmtpConfig()))
    for _ in range(100):
        try:
            reply = await send(port, "ann@example.org")
            break
        except (aiosmtplib.SMTPConnectError, OSError):
            await asyncio.sleep(0.02)
    assert reply.code == 250
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises((aiosmtplib.SMTPConnectError, OSError)):
        await send(port, "ann@example.org")


@pytest.mark.parametrize(
    "config",
    [
        {"rate_4xx": 1.5},
        {"rate_5xx": -0.1},
        {"rate_4xx": 0.6, "rate_5xx": 0.6},
        {"rate_reject_data": 0.6, "rate_drop_after_data": 0.6},
        {"rcpt_4xx": "550 wrong class"},
        {"rcpt_5xx": "5xx"},
        {"username": "u"},
        {"latency": -1},
    ],
)
def test_bad_configuration_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        FakeSmtpConfig(**config)
