"""The SMTP channel against the real aiosmtpd sink over loopback: pool, classification, TLS, AUTH, faults."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from dispatcher.channels.base import OutboundEmail
from dispatcher.channels.fake_smtp import FakeSmtp, FakeSmtpConfig, start_fake_smtp
from dispatcher.channels.smtp import SmtpChannel, smtp_channel_from_config
from dispatcher.channels.smtp_outcomes import classify_reply
from dispatcher.core.mime import MimeSkeleton
from dispatcher.errors import InputError

SKELETON = MimeSkeleton(from_header="Shop <news@shop.example>", domain="shop.example")


def outbound(index: int, to: str | None = None, *, data: bytes | None = None) -> OutboundEmail:
    address = to or f"user{index}@example.org"
    key = f"dsp-1-{index}"
    if data is None and (not address.isascii() or "\r" in address):
        data = b"From: news@shop.example\r\nTo: undisclosed-recipients:;\r\n\r\nhi\r\n"
    filled = data or SKELETON.fill(
        to=address,
        subject=f"Offer {index}",
        text=f"Hello {index}",
        html=f"<p>Hello {index}</p>",
        message_key=key,
        unsubscribe_url=f"https://t.example/u/{index}",
    )
    return OutboundEmail(index, address, "bounces@shop.example", filled, key)


def channel(sink: FakeSmtp, **settings: Any) -> SmtpChannel:
    return smtp_channel_from_config({"host": sink.host, "port": sink.port, "tls": "none", **settings})


Sink = Callable[..., AbstractAsyncContextManager[FakeSmtp]]


@pytest.fixture
def sink() -> Sink:
    def start(**config: Any) -> AbstractAsyncContextManager[FakeSmtp]:
        tls = config.pop("tls_context", None)
        return start_fake_smtp(FakeSmtpConfig(**{"seed": 5, **config}), tls_context=tls)

    return start


# --------------------------------------------------------------------------------------------------- pool


async def test_the_pool_delivers_every_message_exactly_once_over_reused_connections(sink: Sink) -> None:
    async with sink() as server:
        smtp = channel(server, connections=10)
        first = await smtp.send_batch([outbound(i) for i in range(1, 201)])
        second = await smtp.send_batch([outbound(i) for i in range(201, 261)])
        await smtp.close()
    assert [o.message_id for o in first + second] == list(range(1, 261))
    assert {o.status for o in first + second} == {"sent"}
    assert all(o.provider_message_id and o.provider_message_id.startswith("FS") for o in first)
    stats = server.store.stats()
    assert stats["messages"] == stats["unique_recipients"] == 260
    assert stats["recipients_with_duplicates"] == stats["duplicate_message_ids"] == 0
    assert stats["connections"] == 10  # spread over the whole pool, and the second batch reused it
    for record in server.store.messages[:20]:
        assert record.data is not None
        parsed = email.message_from_bytes(record.data, policy=email.policy.default)
        index = int(str(parsed["Message-ID"]).split("-")[2].split("@")[0])
        assert parsed["To"] == record.rcpt_tos[0] == f"user{index}@example.org"
        assert parsed["Date"] is not None  # stamped by the channel
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_concurrent_batches_share_the_pool_without_exceeding_it(sink: Sink) -> None:
    async with sink() as server:
        smtp = channel(server, connections=3)
        results = await asyncio.gather(
            *(smtp.send_batch([outbound(b * 100 + i) for i in range(1, 21)]) for b in range(4))
        )
        await smtp.close()
    assert all(o.status == "sent" for batch in results for o in batch)
    assert server.store.stats()["messages"] == 80
    assert server.store.counters["connections"] == 3


@pytest.mark.parametrize("noticed", [True, False], ids=["closed-seen", "closed-unseen"])
async def test_a_connection_the_relay_closed_while_idle_is_replaced_without_losing_the_message(
    sink: Sink, noticed: bool
) -> None:
    async with sink() as server:
        smtp = channel(server, connections=1)
        assert (await smtp.send_batch([outbound(1)]))[0].status == "sent"
        server.disconnect_all()
        if noticed:  # the client saw the close before the next message; otherwise MAIL meets a dead socket
            await asyncio.sleep(0.05)
        again = await smtp.send_batch([outbound(2), outbound(3)])
        await smtp.close()
    assert [o.status for o in again] == ["sent", "sent"]
    assert server.store.stats()["messages"] == 3
    assert server.store.counters["connections"] == 2


async def test_a_date_already_in_the_message_is_kept(sink: Sink) -> None:
    data = b"From: a@shop.example\r\nTo: b@example.org\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n"
    async with sink() as server:
        smtp = channel(server)
        await smtp.send_batch([outbound(1, data=data)])
        await smtp.close()
    received = server.store.messages[0].data
    assert received is not None
    assert received.count(b"Date:") == 1
    assert b"Date: Mon, 23 Nov 2026 10:00:00 +0000" in received


# -------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("reply", "status", "reason", "suppresses"),
    [
        ("550 5.1.1 No such user", "permanent", "hard_bounce", True),
        ("551 User not local", "permanent", "hard_bounce", True),
        ("553 5.1.3 Bad recipient address syntax", "permanent", "hard_bounce", True),
        ("550 Mailbox unavailable", "permanent", "hard_bounce", True),
        ("550 5.2.1 Mailbox disabled", "permanent", "hard_bounce", True),
        ("552 5.2.2 Mailbox full", "permanent", "rejected", False),
        ("554 5.7.1 Relay access denied", "permanent", "rejected", False),
        ("550 5.7.1 Blocked by policy", "permanent", "rejected", False),
        ("530 5.7.0 Authentication required", "transient", "provider_config", False),
        ("451 4.7.1 Greylisted, try later", "transient", "throttled", False),
        ("450 4.2.1 Rate limited", "transient", "throttled", False),
        ("452 4.5.3 Too many recipients", "transient", "throttled", False),
        ("421 4.7.0 Too many connections", "transient", "throttled", False),
        ("441 4.4.1 No answer from host", "transient", "server_error", False),
    ],
)
async def test_rcpt_refusals_are_classified(
    sink: Sink, reply: str, status: str, reason: str, suppresses: bool
) -> None:
    key = "rcpt_4xx" if reply.startswith("4") else "rcpt_5xx"
    rate = "rate_4xx" if reply.startswith("4") else "rate_5xx"
    async with sink(**{key: reply, rate: 1.0}) as server:
        smtp = channel(server, connections=1, throttle_retry_after=90)
        outcomes = await smtp.send_batch([outbound(1), outbound(2)])
        await smtp.close()
    for outcome in outcomes:
        assert (outcome.status, outcome.reason, outcome.suppresses) == (status, reason, suppresses)
        assert outcome.error_code == reply[:3]
        assert outcome.error_detail is not None
        assert reply[4:] in outcome.error_detail
        assert not outcome.possible_duplicate
        assert outcome.retry_after == (90.0 if reason == "throttled" else None)
    assert server.store.stats()["messages"] == 0


async def test_a_refused_recipient_does_not_spoil_the_next_transaction(sink: Sink) -> None:
    async with sink() as server:
        smtp = channel(server, connections=1)
        outcomes = await smtp.send_batch([outbound(1, "bounce-me@example.org"), outbound(2), outbound(3)])
        await smtp.close()
    assert [(o.status, o.reason) for o in outcomes] == [
        ("permanent", "hard_bounce"),
        ("sent", None),
        ("sent", None),
    ]
    assert outcomes[0].suppresses
    assert [m.rcpt_tos for m in server.store.messages] == [["user2@example.org"], ["user3@example.org"]]


async def test_envelope_addresses_that_cannot_be_written_fail_alone(sink: Sink) -> None:
    async with sink() as server:
        smtp = channel(server, connections=1)
        outcomes = await smtp.send_batch(
            [
                outbound(1, "jürgen@example.org"),
                outbound(2, "a@b.example>\r\nRCPT TO:<x@y.example"),
                outbound(3),
            ]
        )
        await smtp.close()
    assert [(o.status, o.reason) for o in outcomes] == [
        ("permanent", "rejected"),  # non-ASCII local part: needs SMTPUTF8, the address may be fine
        ("permanent", "invalid_address"),
        ("sent", None),
    ]
    assert [m.rcpt_tos for m in server.store.messages] == [["user3@example.org"]]


async def test_a_refusal_after_data_is_permanent_and_nothing_is_stored(sink: Sink) -> None:
    async with sink(rate_reject_data=1.0) as server:
        smtp = channel(server, connections=1)
        outcomes = await smtp.send_batch([outbound(1), outbound(2)])
        await smtp.close()
    assert [(o.status, o.reason, o.error_code) for o in outcomes] == [("permanent", "rejected", "554")] * 2
    assert not any(o.suppresses for o in outcomes)
    assert server.store.stats()["messages"] == 0


@pytest.mark.parametrize(
    ("code", "message", "phase", "reason"),
    [
        (550, "5.1.1 <x@y>: Recipient address rejected", "data", "hard_bounce"),
        (550, "Message content rejected", "data", "rejected"),
        (550, "5.1.8 Sender address rejected", "rcpt", "rejected"),
        (550, "Sender refused", "mail", "rejected"),
        (553, "5.1.7 Bad sender address syntax", "mail", "rejected"),
        (554, "Transaction failed", "data", "rejected"),
    ],
)
def test_reply_classification_by_phase(code: int, message: str, phase: Any, reason: str) -> None:
    outcome = classify_reply(7, code, message, phase, throttle_retry_after=1.0)
    assert (outcome.message_id, outcome.status, outcome.reason) == (7, "permanent", reason)


# ---------------------------------------------------------------------------------------- lost answers


async def test_a_connection_cut_after_data_is_an_ambiguous_transient(sink: Sink) -> None:
    async with sink(rate_drop_after_data=1.0) as server:
        smtp = channel(server, connections=2)
        outcomes = await smtp.send_batch([outbound(i) for i in range(1, 5)])
        await smtp.close()
    for outcome in outcomes:
        assert (outcome.status, outcome.reason, outcome.possible_duplicate) == (
            "transient",
            "connection",
            True,
        )
        assert not outcome.suppresses
    # the relay did take them: exactly why a blind resend could duplicate
    assert server.store.stats()["messages"] == 4
    assert server.store.counters["connections"] == 4  # each broken connection replaced


async def test_an_unreachable_relay_fails_the_batch_fast_and_safely() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before use: nothing listens there
    smtp = smtp_channel_from_config({"host": "127.0.0.1", "port": port, "tls": "none", "connections": 4})
    outcomes = await smtp.send_batch([outbound(i) for i in range(1, 101)])
    await smtp.close()
    assert [o.message_id for o in outcomes] == list(range(1, 101))
    assert Counter((o.status, o.reason, o.possible_duplicate) for o in outcomes) == {
        ("transient", "connection", False): 100
    }


async def test_a_relay_that_never_answers_times_out_as_transient() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    smtp = smtp_channel_from_config({"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 0.3})
    outcomes = await smtp.send_batch([outbound(1), outbound(2)])
    await smtp.close()
    server.close()
    assert [(o.status, o.reason, o.possible_duplicate) for o in outcomes] == [
        ("transient", "timeout", False)
    ] * 2


async def test_cancelling_a_batch_leaves_the_channel_usable(sink: Sink) -> None:
    async with sink(latency=0.2) as server:
        smtp = channel(server, connections=2)
        task = asyncio.create_task(smtp.send_batch([outbound(i) for i in range(1, 11)]))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        outcomes = await smtp.send_batch([outbound(20), outbound(21), outbound(22)])
        await smtp.close()
    assert [o.status for o in outcomes] == ["sent"] * 3


# ------------------------------------------------------------------------------------------ TLS and AUTH


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509  # noqa: F401
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("needs the cryptography package or the openssl command to make a certificate")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert, key
    return _cryptography_cert(cert, key)


def _cryptography_cert(cert: Path, key: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


async def test_starttls_with_auth_delivers_and_verifies_the_certificate(
    sink: Sink, tls_files: tuple[Path, ssl.SSLContext]
) -> None:
    cert, context = tls_files
    async with sink(username="shop", password="s3cret", tls_context=context) as server:
        settings = {
            "tls": "starttls",
            "ca_file": str(cert),
            "username": "shop",
            "password": "s3cret",
            "connections": 1,
        }
        smtp = channel(server, **settings)
        outcomes = await smtp.send_batch([outbound(1), outbound(2)])
        await smtp.close()
        wrong = channel(server, **{**settings, "password": "nope"})
        refused = await wrong.send_batch([outbound(3)])
        await wrong.close()
        untrusted = channel(server, **{**settings, "ca_file": None})
        unverified = await untrusted.send_batch([outbound(4)])
        await untrusted.close()
        plain = channel(server)
        cleartext = await plain.send_batch([outbound(5)])
        await plain.close()
    assert [o.status for o in outcomes] == ["sent", "sent"]
    assert server.store.counters["auth_ok"] == 1
    assert (refused[0].status, refused[0].reason, refused[0].error_code) == (
        "transient",
        "provider_config",
        "535",
    )
    assert (unverified[0].status, unverified[0].reason) == ("transient", "provider_config")
    assert (cleartext[0].status, cleartext[0].reason) == (
        "transient",
        "provider_config",
    )  # 530 STARTTLS first
    assert server.store.stats()["messages"] == 2


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "host"),
        ({"host": "h", "tls": "ssl"}, "tls"),
        ({"host": "h", "port": 0}, "port"),
        ({"host": "h", "port": "25"}, "port"),
        ({"host": "h", "username": "u"}, "password"),
        ({"host": "h", "connections": 0}, "connections"),
        ({"host": "h", "timeout": -1}, "timeout"),
        ({"host": "h", "tls_verify": "no"}, "tls_verify"),
        ({"host": "h", "colour": "blue"}, "colour"),
        ({"host": "h", "dkim_selector": "s", "dkim_domain": "shop.example"}, "dkim_private_key"),
        ({"host": "h", "dkim_selector": "s", "dkim_domain": "d.example", "dkim_private_key": "junk"}, None),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(config: dict[str, Any], field: str | None) -> None:
    with pytest.raises(InputError) as raised:
        smtp_channel_from_config(config)
    if field is not None:
        assert field in {d["field"] for d in raised.value.details}
        assert field in raised.value.message
    else:
        assert "dkim" in raised.value.message


def test_defaults_and_engine_keys() -> None:
    smtp = smtp_channel_from_config(
        {"host": "relay.example", "from": ["news@shop.example"], "mail_from": "b@shop.example", "routes": {}}
    )
    assert (smtp.config.port, smtp.config.tls, smtp.config.connections) == (587, "starttls", 10)
    assert smtp.config.local_hostname == "localhost"
    assert not smtp.supports_idempotency
    assert smtp_channel_from_config({"host": "h", "tls": "tls"}).config.port == 465
    assert smtp_channel_from_config({"host": "h", "tls": "none", "timeout_s": 5}).config.timeout == 5.0
