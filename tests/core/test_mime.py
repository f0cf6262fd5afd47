"""The MIME skeleton: every message it writes parses back to exactly what went in; unsafe headers refused."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.inbound import parse_message_key
from dispatcher.core.mime import MimeSkeleton, encode_body, message_id_for
from dispatcher.errors import InputError, TemplateError

FAST = settings(max_examples=300, deadline=None)
SKELETON = MimeSkeleton(
    from_header="Shop <news@shop.example>", domain="shop.example", reply_to="help@shop.example"
)
WHEN = datetime(2026, 11, 23, 10, 30, tzinfo=timezone(timedelta(hours=1)))


def fill(skeleton: MimeSkeleton = SKELETON, **changes: Any) -> bytes:
    values: dict[str, Any] = {
        "to": "ann@example.org",
        "subject": "Winter sale",
        "text": "Hello Ann",
        "html": "<p>Hello Ann</p>",
        "message_key": "c1-42",
        "unsubscribe_url": "https://t.example/u/tok",
        "date": WHEN,
    }
    return skeleton.fill(**{**values, **changes})


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


def lines_ok(data: bytes) -> None:
    """7-bit, CRLF only, every line within SMTP's 998 octets."""
    assert data.isascii()
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parts(message: EmailMessage) -> dict[str, str]:
    found = {}
    for part in message.walk():
        if not part.is_multipart():
            assert part.get_content_charset() == "utf-8"
            found[part.get_content_type()] = newlines(part.get_content())
    return found


# --------------------------------------------------------------------------------------------- structure


def test_a_message_with_html_is_multipart_alternative_with_every_header() -> None:
    data = fill()
    lines_ok(data)
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    assert parts(message) == {"text/plain": "Hello Ann", "text/html": "<p>Hello Ann</p>"}
    assert message["From"] == "Shop <news@shop.example>"
    assert message["Reply-To"] == "help@shop.example"
    assert message["To"] == "ann@example.org"
    assert message["Subject"] == "Winter sale"
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime == WHEN
    assert message["Message-ID"] == message_id_for("c1-42", "shop.example") == "<c1-42@shop.example>"
    assert message["List-Unsubscribe"] == "<https://t.example/u/tok>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_without_html_the_message_is_a_single_text_part() -> None:
    message = parse(fill(html=None, text="Only text\n"))
    assert message.get_content_type() == "text/plain"
    assert parts(message) == {"text/plain": "Only text\n"}


def test_message_id_follows_the_key_so_a_resend_keeps_it() -> None:
    first, again, other = (
        parse(fill(message_key=k))["Message-ID"] for k in ("dsp-1-42", "dsp-1-42", "dsp-1-43")
    )
    assert first == again == "<dsp-1-42@shop.example>" != other
    assert parse_message_key(first) == (1, 42)  # what the bounce parser reads back


@pytest.mark.parametrize("key", ["a b", "x@y", "<dsp-1-2>", "é", "a..b", ".a", "k" * 201])
def test_keys_that_are_no_dot_atom_are_hashed_into_the_message_id(key: str) -> None:
    found = parse(fill(message_key=key))["Message-ID"]
    assert re.fullmatch(r"<[0-9a-f]{32}@shop\.example>", found)
    assert found == message_id_for(key, "shop.example") == parse(fill(message_key=key))["Message-ID"]


def test_no_date_unless_given_and_naive_dates_refused() -> None:
    assert parse(fill(date=None))["Date"] is None
    with pytest.raises(InputError):
        fill(date=datetime(2026, 1, 1))
    assert parse(fill(date=datetime(2026, 1, 1, tzinfo=UTC)))["Date"].datetime.tzinfo is not None


@pytest.mark.parametrize(
    ("url", "mailto", "expected", "one_click"),
    [
        ("https://t.example/u/a", None, "<https://t.example/u/a>", True),
        (
            "https://t.example/u/a",
            "mailto:u@t.example",
            "<https://t.example/u/a>, <mailto:u@t.example>",
            True,
        ),
        (None, "mailto:u@t.example?subject=unsubscribe", "<mailto:u@t.example?subject=unsubscribe>", False),
        (None, None, None, False),
    ],
)
def test_list_unsubscribe_headers(
    url: str | None, mailto: str | None, expected: str | None, one_click: bool
) -> None:
    message = parse(fill(unsubscribe_url=url, unsubscribe_mailto=mailto))
    assert message["List-Unsubscribe"] == expected
    assert (message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click") is one_click
    if not one_click:
        assert message["List-Unsubscribe-Post"] is None


def test_a_skeleton_without_list_unsubscribe_writes_none() -> None:
    skeleton = MimeSkeleton(from_header="news@shop.example", domain="shop.example", list_unsubscribe=False)
    message = parse(fill(skeleton))
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None


def test_non_ascii_names_and_idn_domains_are_encoded() -> None:
    skeleton = MimeSkeleton(
        from_header='"Café Zoë, Ltd." <news@bücher.example>',
        domain="bücher.example",
        headers={"X-Tag": "été"},
    )
    message = parse(fill(skeleton, to="Jürgen Groß <jg@straße.example>"))
    assert message["From"].addresses[0].display_name == "Café Zoë, Ltd."
    assert message["From"].addresses[0].addr_spec == "news@xn--bcher-kva.example"
    assert message["To"].addresses[0].display_name == "Jürgen Groß"
    assert message["To"].addresses[0].domain == "strasse.example"  # IDNA 2003 maps ß
    assert message["X-Tag"] == "été"
    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")


def test_quoted_display_names_with_specials() -> None:
    skeleton = MimeSkeleton(
        from_header='"Shop \\"Best\\" <Deals>" <news@shop.example>', domain="shop.example"
    )
    assert parse(fill(skeleton))["From"].addresses[0].display_name == 'Shop "Best" <Deals>'


def test_long_ascii_subject_is_folded_and_unfolds_to_the_same_text() -> None:
    subject = " ".join(["discount"] * 40)
    data = fill(subject=subject)
    lines_ok(data)
    head = data.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if not line.startswith(b"List-Unsub"))
    assert parse(data)["Subject"] == subject


def test_body_lines_starting_with_from_or_dot_are_escaped_on_the_wire() -> None:
    encoded = encode_body("From here\n.\n..x\nnot From\n")
    assert encoded == b"=46rom here\r\n=2E\r\n=2E.x\r\nnot From\r\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_header": "not an address", "domain": "shop.example"}, "e-mail address"),
        ({"from_header": "a@shop.example", "domain": "-bad-.example"}, "domain"),
        ({"from_header": "a@shop.example", "domain": "x", "headers": {"Subject": "x"}}, "cannot be set"),
        ({"from_header": "a@shop.example", "domain": "x", "headers": {"Bad Name": "x"}}, "header name"),
        ({"from_header": "a@shop.example", "domain": "x", "headers": {"X-A": "b\nc"}}, "control"),
    ],
)
def test_bad_skeleton_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        MimeSkeleton(**kwargs)


def test_an_empty_message_key_is_refused() -> None:
    with pytest.raises(InputError):
        fill(message_key="")


# ------------------------------------------------------------------------------------------- injection

INJECTIONS: list[tuple[str, str]] = [
    ("subject", "Hi\r\nBcc: evil@x.example"),
    ("subject", "Hi\nBcc: evil@x.example"),
    ("subject", "Hi\rBcc: evil@x.example"),
    ("subject", "Hi\r\n\r\n<html>body</html>"),
    ("subject", "=?UTF-8?Q?=0A?=Bcc: evil@x.example"),
    ("subject", "Sale =?utf-8?q?Hi=0D=0ABcc:_evil@x.example?="),
    ("subject", "=?UTF-8?B?SGkNCkJjYzogZXZpbEB4LmV4YW1wbGU=?="),
    ("subject", "=?iso-8859-1?q?=0a?="),
    ("subject", "=?UTF-8*en?Q?=0ABcc:_x?="),
    ("subject", "=?utf-16-be?b?AAo=?="),
    ("subject", "=?utf-8?b?wo0=?="),  # U+008D, a C1 control, after decoding
    ("subject", "Hi\x00there"),
    ("subject", "Hi\u2028Bcc: evil@x.example"),
    ("subject", "Hi\x85Bcc: evil@x.example"),
    ("subject", "Hi\x0bthere"),
    ("subject", "Hi\tthere"),
    ("subject", "\x7f"),
    ("to", "ann@example.org\r\nBcc: evil@x.example"),
    ("to", "ann@example.org\nBcc: evil@x.example"),
    ("to", "=?utf-8?q?Ann=0ABcc:_evil@x.example?= <ann@example.org>"),
    ("to", "Ann\r\n <ann@example.org>"),
    ("to", "ann@example.org>, <evil@x.example"),
    ("to", "ann@example.org, evil@x.example"),
    ("unsubscribe_url", "https://t.example/u\r\nBcc: evil@x.example"),
    ("unsubscribe_url", "https://t.example/u>, <https://evil.example"),
    ("unsubscribe_url", "javascript:alert(1)"),
    ("unsubscribe_mailto", "mailto:u@t.example\nBcc: evil@x.example"),
]


@pytest.mark.parametrize(("field", "value"), INJECTIONS)
def test_header_injection_is_refused(field: str, value: str) -> None:
    with pytest.raises(TemplateError) as raised:
        fill(**{field: value})
    assert raised.value.details[0]["field"] == field


@pytest.mark.parametrize(
    "value", ["Shop\r\nBcc: x@y <news@shop.example>", "=?utf-8?q?Shop=0A?= <news@shop.example>"]
)
def test_header_injection_in_the_sender_is_refused(value: str) -> None:
    with pytest.raises(InputError):
        MimeSkeleton(from_header=value, domain="shop.example")


def test_harmless_encoded_word_lookalikes_reach_the_reader_literally() -> None:
    subject = "Try =?utf-8?q?caf=C3=A9?= now"
    assert parse(fill(subject=subject))["Subject"] == subject


# ------------------------------------------------------------------------------------------ properties

HEADER_TEXT = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"))
LINE_PIECES = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60),
    st.sampled_from(["From me", ".", "..", ". x", "From", "x" * 1_200, "😀" * 400, "=", "=_", "--", " "]),
)
BODIES = st.lists(LINE_PIECES, max_size=8).map("\n".join)
SUBJECTS = st.one_of(
    st.text(HEADER_TEXT, max_size=300),
    st.lists(st.sampled_from(["sale", " ", "=?", "?=", "é", "😀", "x" * 200, "  "]), max_size=12).map(
        "".join
    ),
)


@FAST
@given(subject=SUBJECTS, text=BODIES, html=st.one_of(st.none(), BODIES))
def test_every_message_parses_back_to_what_went_in(subject: str, text: str, html: str | None) -> None:
    data = fill(subject=subject, text=text, html=html)
    lines_ok(data)
    message = parse(data)
    assert message["Subject"] == subject
    expected = {"text/plain": newlines(text)}
    if html is not None:
        expected["text/html"] = newlines(html)
    assert parts(message) == expected


@FAST
@given(name=st.text(HEADER_TEXT, max_size=80).map(str.strip))
def test_display_names_round_trip_with_runs_of_spaces_collapsed(name: str) -> None:
    sender = f"{name} <news@shop.example>" if name else "news@shop.example"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    message = parse(
        fill(MimeSkeleton(from_header=sender, domain="d.example"), to=f'"{quoted}" <a@b.example>')
    )
    expected = " ".join(name.split())
    for header, address in (("From", "news@shop.example"), ("To", "a@b.example")):
        assert message[header].addresses[0].display_name == expected
        assert message[header].addresses[0].addr_spec == address
