"""DKIM: messages the sink received verify against the published key; tampering breaks them."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest

from dispatcher.channels.base import OutboundEmail
from dispatcher.channels.fake_smtp import FakeSmtpConfig, start_fake_smtp
from dispatcher.channels.smtp import smtp_channel_from_config
from dispatcher.channels.smtp_dkim import DkimSigner
from dispatcher.core.mime import MimeSkeleton
from dispatcher.errors import InputError

SELECTOR, DOMAIN = "mail2026", "shop.example"


def dns_for(record: bytes) -> object:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return lookup


def message(index: int = 1) -> bytes:
    skeleton = MimeSkeleton(
        from_header="Café <news@shop.example>", domain=DOMAIN, reply_to="help@shop.example"
    )
    return skeleton.fill(
        to=f"user{index}@example.org",
        subject="Soldes d'hiver — 30 %",
        text="Bonjour\n.\nFrom us\n" + "x" * 500,
        html="<p>Bonjour</p>",
        message_key=f"dsp-3-{index}",
        unsubscribe_url="https://t.example/u/tok",
    )


async def test_messages_received_by_the_sink_carry_a_valid_signature(rsa_key: tuple[str, bytes]) -> None:
    pem, record = rsa_key
    async with start_fake_smtp(FakeSmtpConfig()) as sink:
        smtp = smtp_channel_from_config(
            {"host": sink.host, "port": sink.port, "tls": "none", "dkim_selector": SELECTOR,
             "dkim_domain": DOMAIN, "dkim_private_key": pem}
        )  # fmt: skip
        emails = [
            OutboundEmail(i, f"user{i}@example.org", "b@shop.example", message(i), f"k{i}") for i in (1, 2)
        ]
        outcomes = await smtp.send_batch(emails)
        await smtp.close()
    assert [o.status for o in outcomes] == ["sent", "sent"]
    for received in sink.store.messages:
        assert received.data is not None
        assert received.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(received.data, dnsfunc=dns_for(record))
        signed = re.search(rb"h=([^;]+);", received.data.replace(b"\r\n", b""))
        assert signed is not None
        names = {n.strip() for n in signed.group(1).decode().split(":")}
        assert {
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        } <= names
        assert {"mime-version", "content-type"} <= names


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: ", b"Subject: RE: "),
        (b"To: user1@example.org", b"To: someone@example.org"),
        (b"List-Unsubscribe: <https://t.example/u/tok>", b"List-Unsubscribe: <https://evil.example/u>"),
        (b"Bonjour\r\n", b"Bonsoir\r\n"),
    ],
)
def test_tampering_breaks_the_signature(rsa_key: tuple[str, bytes], old: bytes, new: bytes) -> None:
    pem, record = rsa_key
    signed = DkimSigner(selector=SELECTOR, domain=DOMAIN, private_key=pem).sign(message())
    assert dkim.verify(signed, dnsfunc=dns_for(record))
    assert old in signed
    assert not dkim.verify(signed.replace(old, new, 1), dnsfunc=dns_for(record))


def test_adding_a_header_that_was_signed_absent_breaks_the_signature(rsa_key: tuple[str, bytes]) -> None:
    pem, record = rsa_key
    plain = MimeSkeleton(from_header="news@shop.example", domain=DOMAIN, list_unsubscribe=False)
    data = plain.fill(to="a@example.org", subject="s", text="t", message_key="k")
    signed = DkimSigner(selector=SELECTOR, domain=DOMAIN, private_key=pem).sign(data)
    assert dkim.verify(signed, dnsfunc=dns_for(record))
    forged = signed.replace(b"MIME-Version", b"Reply-To: evil@x.example\r\nMIME-Version", 1)
    assert not dkim.verify(forged, dnsfunc=dns_for(record))


def test_ed25519_signatures_verify(tmp_path: Path) -> None:
    nacl_signing = pytest.importorskip("nacl.signing", reason="ed25519 DKIM needs PyNaCl (not installed)")
    key = nacl_signing.SigningKey.generate()
    seed = base64.b64encode(bytes(key)).decode()
    record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key))
    signed = DkimSigner(selector=SELECTOR, domain=DOMAIN, private_key=seed, algorithm="ed25519-sha256").sign(
        message()
    )
    assert b"a=ed25519-sha256" in signed
    assert dkim.verify(signed, dnsfunc=dns_for(record))


@pytest.mark.parametrize(
    ("selector", "domain", "key", "algorithm"),
    [
        ("bad selector", DOMAIN, "x", "rsa-sha256"),
        (SELECTOR, "not a domain", "x", "rsa-sha256"),
        (SELECTOR, DOMAIN, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "rsa-sha256"),
        (SELECTOR, DOMAIN, "x", "rsa-sha1"),
        (SELECTOR, DOMAIN, "x", "ed25519-sha256"),
    ],
)
def test_unusable_dkim_settings_are_refused(selector: str, domain: str, key: str, algorithm: str) -> None:
    with pytest.raises(InputError):
        DkimSigner(selector=selector, domain=domain, private_key=key, algorithm=algorithm)  # type: ignore[arg-type]
