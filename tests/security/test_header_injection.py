"""Header injection (CRLF and RFC 2047 encoded-words) never puts a forged header on the wire.

The path under test is the one a campaign takes: a subject template rendered with hostile contact values,
the MIME skeleton built from hostile From / Reply-To values, the SMTP channel, and the real SMTP sink
(aiosmtpd over loopback). What the sink received is parsed with :mod:`email.parser`. A value is either
refused before anything is sent, or arrives as the literal text it was, with exactly the headers we write.
``tests/core/test_mime.py`` covers the pure encoder; this adds decoding tricks and the wire.
"""

from __future__ import annotations

import base64
from collections import Counter
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from dispatcher.channels.base import OutboundEmail
from dispatcher.channels.fake_smtp import FakeSmtp, FakeSmtpConfig, start_fake_smtp
from dispatcher.channels.smtp import smtp_channel_from_config
from dispatcher.core.mime import MimeSkeleton
from dispatcher.core.rendering import compile_template, render
from dispatcher.errors import InputError

SUBJECT = compile_template("{{ first_name }}, 20% off today", part="subject")
FROM = "Shop <news@shop.example>"
TO = "ann@example.org"
EXPECTED_HEADERS = Counter(
    ["Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "List-Unsubscribe",
     "List-Unsubscribe-Post", "Content-Type"]
)  # fmt: skip


def _b64(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# Values that must be refused wherever they go into a header.
INJECTIONS = [
    "x\r\nBcc: evil@x.example",
    "x\nBcc: evil@x.example",
    "x\rBcc: evil@x.example",
    "x\r\n\r\n<h1>a body of the attacker's</h1>",
    "x\r\n Bcc: evil@x.example",  # looks like folding
    "x\x00Bcc: evil@x.example",
    "x\x85Bcc: evil@x.example",  # NEL
    "x\u2028Bcc: evil@x.example",
    "x\tBcc",
    "=?utf-8?q?x=0D=0ABcc:_evil@x.example?=",
    "=?UTF-8?Q?=0A?=X-Injected: 1",
    "=?utf-8?Q?x=0aBcc=3A_evil=40x.example?=",
    "=?iso-8859-1?q?x=0ABcc:_evil@x.example?=",
    "=?utf-8*en?q?x=0A?=Bcc: evil@x.example",
    _b64("x\r\nBcc: evil@x.example"),
    "=?utf-8?B?eA0KQmNjOiBldmlsQHguZXhhbXBsZQ?=",  # unpadded base64
    "=?utf-16?b?" + base64.b64encode("x\r\nBcc: e".encode("utf-16")).decode() + "?=",
    "=?utf-8?q?x=E2=80=A8Bcc:_evil@x.example?=",  # U+2028 encoded
    "=?utf-8?q?x=C2=85Bcc?=",  # NEL encoded
    "ok =?utf-8?q?a?= =?utf-8?q?=0D=0A?=X-Injected: 1",
    "=?x-unknown?q?=0A?=",  # an unknown charset is read as Latin-1 here: a reader may decode it too
]
# Values that look dangerous but carry no line break: they must arrive as the literal text.
LOOKALIKES = [
    "Bcc: evil@x.example",
    "=?utf-8?q?Hello?=",
    "=?utf-8?q?=0?=",  # broken quoted-printable: a reader shows it literally
    "x ?= =? y",
    "Ünïcødé: 100% \\ \" ' < > , ; @",
    "%0D%0ABcc: evil@x.example",
    "\\r\\nBcc: evil@x.example",
    "x" * 900,
    " ".join(["word"] * 150),
]


def _parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _assert_only_our_headers(message: EmailMessage, reply_to: bool = False) -> None:
    expected = EXPECTED_HEADERS + (Counter(["Reply-To"]) if reply_to else Counter())
    assert Counter(message.keys()) == expected, message.keys()
    assert message.defects == []
    for part in message.iter_parts():
        assert part.keys() == ["Content-Type", "Content-Transfer-Encoding"]


async def _send(sink: FakeSmtp, data: bytes, to: str = TO, mail_from: str = "bounces@shop.example") -> str:
    channel = smtp_channel_from_config({"host": sink.host, "port": sink.port, "tls": "none"})
    try:
        (outcome,) = await channel.send_batch([OutboundEmail(1, to, mail_from, data, "k-1")])
    finally:
        await channel.close()
    return outcome.status


def _fill(skeleton: MimeSkeleton, subject: str, to: str = TO) -> bytes:
    return skeleton.fill(
        to=to, subject=subject, text="Hello", html="<p>Hello</p>", message_key="dsp-1-1",
        unsubscribe_url="https://t.example/u/abc",
    )  # fmt: skip


@pytest.mark.parametrize("value", INJECTIONS)
def test_injections_in_a_rendered_subject_are_refused_before_sending(value: str) -> None:
    subject = render(SUBJECT, {"first_name": value})
    with pytest.raises(InputError) as caught:
        _fill(MimeSkeleton(from_header=FROM, domain="shop.example"), subject)
    assert caught.value.details[0]["field"] == "subject"


@pytest.mark.parametrize("field", ["from_header", "reply_to"])
@pytest.mark.parametrize("value", INJECTIONS)
def test_injections_in_from_and_reply_to_display_names_are_refused(field: str, value: str) -> None:
    for mailbox in (
        f"{value} <news@shop.example>",
        f'"{value}" <news@shop.example>',
        f"news@shop.example{value}",
    ):
        kwargs = {"from_header": FROM, field: mailbox}
        with pytest.raises(InputError) as caught:
            MimeSkeleton(domain="shop.example", **kwargs)  # type: ignore[arg-type]
        assert caught.value.details[0]["field"] == field


@pytest.mark.parametrize(
    "to", [f"ann@example.org{v}" for v in INJECTIONS[:6]] + ["Ann <ann@example.org>, b@x.example"]
)
def test_injections_in_the_recipient_header_are_refused(to: str) -> None:
    with pytest.raises(InputError):
        _fill(MimeSkeleton(from_header=FROM, domain="shop.example"), "Hi", to=to)


async def test_lookalikes_reach_the_wire_as_literal_text_with_only_our_headers() -> None:
    skeleton = MimeSkeleton(from_header=FROM, domain="shop.example", reply_to="Help <help@shop.example>")
    async with start_fake_smtp(FakeSmtpConfig(seed=1)) as sink:
        for value in LOOKALIKES:
            subject = render(SUBJECT, {"first_name": value})
            assert await _send(sink, _fill(skeleton, subject)) == "sent"
        received = list(sink.store.messages)
    assert len(received) == len(LOOKALIKES)
    for value, record in zip(LOOKALIKES, received, strict=True):
        assert record.rcpt_tos == [TO]
        assert record.data is not None
        message = _parse(record.data)
        _assert_only_our_headers(message, reply_to=True)
        assert message["Subject"] == f"{value}, 20% off today"


SENDERS = [
    ('Shop "Best" Deals <news@shop.example>', "news@shop.example"),
    ("Ünïcødé Shop <news@shop.example>", "news@shop.example"),
    ("=?utf-8?q?Shop?= <news@shop.example>", "news@shop.example"),
    ("Shop <evil@x.example>, Other <news@shop.example>", "news@shop.example"),
    ('Evil <evil@x.example>" <news@shop.example>', "news@shop.example"),
    ("Bcc: evil@x.example <news@shop.example>", "news@shop.example"),
    ("news@bücher.example", "news@xn--bcher-kva.example"),
]


@pytest.mark.parametrize(("sender", "address"), SENDERS)
async def test_tricky_display_names_arrive_as_one_mailbox(sender: str, address: str) -> None:
    skeleton = MimeSkeleton(from_header=sender, reply_to=sender, domain="shop.example")
    async with start_fake_smtp(FakeSmtpConfig(seed=1)) as sink:
        assert await _send(sink, _fill(skeleton, "Hi")) == "sent"
        (record,) = sink.store.messages
    assert record.data is not None
    message = _parse(record.data)
    _assert_only_our_headers(message, reply_to=True)
    for name in ("From", "Reply-To"):
        mailboxes = message[name].addresses
        assert [m.addr_spec for m in mailboxes] == [address], (name, str(message[name]))


@pytest.mark.parametrize(
    ("to", "mail_from"),
    [
        ("ann@example.org>\r\nRCPT TO:<evil@x.example", "bounces@shop.example"),
        ("ann@example.org\r\nDATA", "bounces@shop.example"),
        ("ann@example.org", "bounces@shop.example>\r\nRCPT TO:<evil@x.example"),
        ("ann@example.org>, <evil@x.example", "bounces@shop.example"),
    ],
)
async def test_smtp_envelope_injection_reaches_no_extra_recipient(to: str, mail_from: str) -> None:
    data = _fill(MimeSkeleton(from_header=FROM, domain="shop.example"), "Hi")
    async with start_fake_smtp(FakeSmtpConfig(seed=1)) as sink:
        status = await _send(sink, data, to=to, mail_from=mail_from)
        received = list(sink.store.messages)
    assert status == "permanent"
    assert received == []
