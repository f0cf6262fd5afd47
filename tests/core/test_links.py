"""Link finding and rewriting (tables), token signing and verification (tables + hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.links import (
    LINK_CODE_LENGTH,
    UnsubscribeRef,
    base62,
    find_links,
    from_base62,
    is_link_code,
    is_trackable_url,
    link_code_from_bytes,
    list_unsubscribe_headers,
    read_recipient_token,
    read_unsubscribe_token,
    recipient_token,
    rewrite_links,
    tracked_url,
    unsubscribe_token,
    verify_unsubscribe_token,
)

SECRET = "test-secret"
T = "https://t.co/r/X"  # what every URL is rewritten to in the tables


def to_t(_: str) -> str:
    return T


# ------------------------------------------------------------------------------------------ text / sms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no links here", "no links here"),
        ("Shop https://shop.example/sale now", f"Shop {T} now"),
        ("Shop https://shop.example/sale.", f"Shop {T}."),
        ("Shop (https://shop.example/a?b=1&c=2), today!", f"Shop ({T}), today!"),
        ("A http://a.example B https://b.example/x#f", f"A {T} B {T}"),
        ("HTTPS://SHOP.EXAMPLE/Caps", T),
        ("ftp://files.example/x mailto:a@b.example", "ftp://files.example/x mailto:a@b.example"),
        ("javascript:alert(1) https:// and http:///path", "javascript:alert(1) https:// and http:///path"),
        ("Go: https://shop.example/é?q=ü now", f"Go: {T} now"),
        ('"https://shop.example/q"', f'"{T}"'),
        ("line1\nhttps://shop.example\nline3", f"line1\n{T}\nline3"),
        ("www.shop.example is not absolute", "www.shop.example is not absolute"),
    ],
)
def test_text_links_are_rewritten(text: str, expected: str) -> None:
    assert rewrite_links(text, make_url=to_t, kind="sms") == expected
    assert rewrite_links(text, make_url=to_t, kind="text") == expected


def test_make_url_none_keeps_the_url_and_each_occurrence_is_asked() -> None:
    asked: list[str] = []

    def only_shop(url: str) -> str | None:
        asked.append(url)
        return T if "shop" in url else None

    text = "https://shop.example/a https://own.example/u/tok https://shop.example/a"
    assert rewrite_links(text, make_url=only_shop, kind="sms") == f"{T} https://own.example/u/tok {T}"
    assert asked == ["https://shop.example/a", "https://own.example/u/tok", "https://shop.example/a"]


def test_find_links_is_distinct_and_ordered() -> None:
    text = "b https://b.example a https://a.example b again https://b.example."
    assert find_links(text, "sms") == ["https://b.example", "https://a.example"]


# ------------------------------------------------------------------------------------------------ html


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('<a href="https://shop.example/x">Shop</a>', f'<a href="{T}">Shop</a>'),
        ("<a href='https://shop.example/x'>Shop</a>", f"<a href='{T}'>Shop</a>"),
        ("<a href=https://shop.example/x>Shop</a>", f"<a href={T}>Shop</a>"),
        ('<A HREF = "https://shop.example/x" class="b">S</A>', f'<A HREF = "{T}" class="b">S</A>'),
        ('<area shape="rect" href="https://shop.example/x">', f'<area shape="rect" href="{T}">'),
        ('<a\nclass="x"\nhref="https://shop.example/x">S</a>', f'<a\nclass="x"\nhref="{T}">S</a>'),
        # text, other attributes, other tags, comments and scripts are never touched
        ("<p>Visit https://shop.example/x</p>", "<p>Visit https://shop.example/x</p>"),
        ('<img src="https://cdn.example/p.png">', '<img src="https://cdn.example/p.png">'),
        (
            '<a title="see https://evil.example href=https://evil.example" href="https://shop.example">S</a>',
            f'<a title="see https://evil.example href=https://evil.example" href="{T}">S</a>',
        ),
        (
            '<a data-href="https://x.example" href="https://y.example">',
            f'<a data-href="https://x.example" href="{T}">',
        ),
        ('<!-- <a href="https://shop.example/x"> -->', '<!-- <a href="https://shop.example/x"> -->'),
        (
            "<script>var s = '<a href=\"https://x.example\">';</script>",
            "<script>var s = '<a href=\"https://x.example\">';</script>",
        ),
        ('<a href="mailto:me@shop.example">m</a>', '<a href="mailto:me@shop.example">m</a>'),
        ('<a href="javascript:alert(1)">x</a>', '<a href="javascript:alert(1)">x</a>'),
        ('<a href="#top">x</a><a href="/relative">y</a>', '<a href="#top">x</a><a href="/relative">y</a>'),
        # entity-escaped hrefs are understood; the first href of a tag wins
        ('<a href="https://s.example/?a=1&amp;b=2">x</a>', f'<a href="{T}">x</a>'),
        (
            '<a href="https://one.example" href="https://two.example">',
            f'<a href="{T}" href="https://two.example">',
        ),
        ('<p>é ü 😀</p>\n<a href="https://s.example">x</a>', f'<p>é ü 😀</p>\n<a href="{T}">x</a>'),
    ],
)
def test_html_rewrites_only_link_hrefs(source: str, expected: str) -> None:
    assert rewrite_links(source, make_url=to_t, kind="html") == expected


def test_html_receives_the_unescaped_url_and_escapes_the_replacement() -> None:
    seen: list[str] = []

    def record(url: str) -> str:
        seen.append(url)
        return 'https://t.example/?a=1&b="2"'

    out = rewrite_links('<a href="https://s.example/?a=1&amp;b=2">x</a>', make_url=record, kind="html")
    assert seen == ["https://s.example/?a=1&b=2"]
    assert out == '<a href="https://t.example/?a=1&amp;b=&quot;2&quot;">x</a>'
    assert find_links('<a href="https://s.example/?a=1&amp;b=2">x</a> https://text.example', "html") == [
        "https://s.example/?a=1&b=2"
    ]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://shop.example/x", True),
        ("http://shop.example", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<script>", False),
        ("//shop.example/x", False),
        ("https:///nohost", False),
        ("https://shop.example/a b", False),
        ("https://shop.example/\r\nSet-Cookie:x", False),
        ("https://[::1", False),
    ],
)
def test_only_absolute_http_urls_are_trackable(url: str, ok: bool) -> None:
    assert is_trackable_url(url) is ok


# ------------------------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize(("number", "text"), [(0, "0"), (61, "z"), (62, "10"), (3844, "100")])
def test_base62(number: int, text: str) -> None:
    assert base62(number) == text
    assert from_base62(text) == number


@pytest.mark.parametrize("text", ["", "-1", "a.b", "é", "z" * 12])
def test_from_base62_refuses(text: str) -> None:
    assert from_base62(text) is None


def test_link_codes_are_short_and_url_safe() -> None:
    code = link_code_from_bytes(bytes(range(8)))
    assert len(code) == LINK_CODE_LENGTH
    assert is_link_code(code)
    assert not is_link_code("abc")
    assert not is_link_code("abc/de")
    assert not is_link_code("abcdé1")


def test_sms_link_is_short() -> None:
    token = recipient_token(SECRET, "Ab3xK9", 14_000_000)
    url = tracked_url("https://sho.rt", "Ab3xK9", token)
    assert len(url) <= 35, url
    assert read_recipient_token(SECRET, "Ab3xK9", token) == 14_000_000


@given(message_id=st.integers(1, 2**62), code=st.text("0123456789abcXYZ", min_size=6, max_size=6))
def test_recipient_tokens_round_trip(message_id: int, code: str) -> None:
    token = recipient_token(SECRET, code, message_id)
    assert read_recipient_token(SECRET, code, token) == message_id
    assert read_recipient_token("other-secret", code, token) is None


@given(
    message_id=st.integers(1, 10**12),
    position=st.integers(0, 40),
    replacement=st.characters(codec="utf-8"),
)
def test_tampered_recipient_tokens_never_verify(message_id: int, position: int, replacement: str) -> None:
    token = recipient_token(SECRET, "Ab3xK9", message_id)
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered != token:
        assert read_recipient_token(SECRET, "Ab3xK9", tampered) is None


@given(junk=st.text(max_size=40))
def test_arbitrary_tokens_never_verify(junk: str) -> None:
    assert read_recipient_token(SECRET, "Ab3xK9", junk) is None
    assert read_unsubscribe_token(SECRET, junk) is None


def test_a_token_is_bound_to_its_link_and_spelled_one_way() -> None:
    token = recipient_token(SECRET, "Ab3xK9", 42)
    assert read_recipient_token(SECRET, "Ab3xK8", token) is None
    assert read_recipient_token(SECRET, "Ab3xK9", "0" + token) is None  # leading zero: same id, not canonical


@given(
    workspace_id=st.integers(1, 2**40),
    channel=st.sampled_from(["sms", "email", "all"]),
    subject_id=st.integers(1, 2**62),
)
def test_unsubscribe_tokens_round_trip(workspace_id: int, channel: str, subject_id: int) -> None:
    token = unsubscribe_token(SECRET, workspace_id, channel, subject_id)
    assert read_unsubscribe_token(SECRET, token) == UnsubscribeRef(workspace_id, channel, subject_id)
    assert verify_unsubscribe_token(SECRET, token, workspace_id, channel, subject_id)
    assert not verify_unsubscribe_token(SECRET, token, workspace_id + 1, channel, subject_id)
    assert read_unsubscribe_token("other-secret", token) is None
    assert token.replace(".", "").isalnum()


@given(
    subject_id=st.integers(1, 10**12), position=st.integers(0, 60), replacement=st.characters(codec="utf-8")
)
def test_tampered_unsubscribe_tokens_never_verify(subject_id: int, position: int, replacement: str) -> None:
    token = unsubscribe_token(SECRET, 7, "email", subject_id)
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered != token:
        assert read_unsubscribe_token(SECRET, tampered) is None
        assert not verify_unsubscribe_token(SECRET, tampered, 7, "email", subject_id)


def test_list_unsubscribe_headers() -> None:
    assert list_unsubscribe_headers("https://d.example/u/tok") == {
        "List-Unsubscribe": "<https://d.example/u/tok>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    both = list_unsubscribe_headers("https://d.example/u/tok", mailto="unsub@d.example")
    assert both["List-Unsubscribe"] == "<mailto:unsub@d.example>, <https://d.example/u/tok>"


@pytest.mark.parametrize(
    ("url", "mailto"),
    [
        ("ftp://d.example/u", None),
        ("https://d.example/u\r\nBcc: x@y.example", None),
        ("https://d.example/u>, <https://evil.example", None),
        ("https://d.example/u", "a@b.example>\nX: y"),
    ],
)
def test_list_unsubscribe_headers_refuse_header_injection(url: str, mailto: str | None) -> None:
    with pytest.raises(ValueError, match="unsubscribe"):
        list_unsubscribe_headers(url, mailto)
