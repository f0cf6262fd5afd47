"""The shortcuts of the cleaning hot path give exactly the libraries' results.

``clean_email`` answers the usual address without email-validator's full run, and ``clean_phone`` looks a
number's type up once; both are checked here against the plain library calls, on tables of awkward cases
and on generated values.
"""

from __future__ import annotations

import unicodedata

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core import cleaning_fields
from dispatcher.core.cleaning import EmailResult, PhoneResult, Rejection, clean_email, clean_phone

MANY = settings(max_examples=600, deadline=None)


def _library_email(raw: str) -> EmailResult | None:
    text = raw.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    domain = checked.domain.lower()
    return EmailResult(f"{checked.local_part}@{domain}", checked.ascii_email, domain)


def _ours(raw: str) -> EmailResult | None:
    result = clean_email(raw)
    return result if isinstance(result, EmailResult) else None


EMAIL_CASES = [
    "ann@example.com",
    "Ann.Smith+tag@Gmail.COM",
    "léa.müller@web.de",
    "Chloé.Tanaka3@gmail.com",
    "POSTMASTER@example.com",  # the library lower-cases RFC 2142 role names
    "abuse@Example.org",
    "a@xn--mller-kva.de",  # IDNA domain: normalized to Unicode, ASCII form kept
    "a@localhost",  # special-use domain: refused
    "a@example.test",
    "a@b",  # no dot in the domain
    "a@123.456",  # numeric TLD
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@-example.com",
    "a@example-.com",
    "a@exa_mple.com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "x" * 60 + "@" + ".".join(["d" * 60] * 4) + ".com",  # too long overall
    "e\u0301mile@example.com",  # not NFC: normalized first, then the same as émile
    "\u0301x@example.com",  # a combining mark first: unsafe
    "a\u200bb@example.com",  # a zero-width space: unsafe
    "用户@例子.广告",
    "ユーザー@example.jp",
    "o'brien@example.ie",
    "a/b=c?d^e`f{g|h}i~j@example.com",
    '"quoted"@example.com',
    "Ann <ann@example.com>",
    "ann@[127.0.0.1]",
    "ann@example.com.",
    "ann @example.com",
]


@pytest.mark.parametrize("raw", EMAIL_CASES)
def test_email_shortcut_matches_the_library(raw: str) -> None:
    assert _ours(raw) == _library_email(raw)


_LOCAL = st.text(
    alphabet=st.sampled_from(list("abcXYZ09._+-'/!#~é\u00fc\u0301\u200b用 \"@")), min_size=0, max_size=70
)
_DOMAIN = st.one_of(
    st.sampled_from(["gmail.com", "Example.ORG", "xn--mller-kva.de", "localhost", "b", "web.de", "a.test"]),
    st.text(alphabet=st.sampled_from(list("ab0-._")), min_size=0, max_size=20),
    st.just("d" * 63 + "." + "e" * 63 + "." + "f" * 63 + ".com"),
)


@MANY
@given(_LOCAL, _DOMAIN)
def test_email_shortcut_matches_the_library_on_generated_addresses(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    assert _ours(raw) == _library_email(raw)


def test_rejections_keep_the_library_message() -> None:
    result = clean_email("a..b@example.com")
    assert isinstance(result, Rejection)
    with pytest.raises(EmailNotValidError) as raised:
        validate_email("a..b@example.com", check_deliverability=False)
    assert result.detail == str(raised.value)


# --- phones: one region lookup, same type --------------------------------------------------------------


def _library_type(raw: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return cleaning_fields._TYPE_NAMES[phonenumbers.number_type(number)]


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+12015550123", None),  # NANPA: US among ~25 regions of +1
        ("+12642351234", None),  # Anguilla, also +1
        ("+14165550123", None),  # Canada
        ("+18005550123", None),  # toll free
        ("+447400123456", None),
        ("+4915123456789", None),
        ("+79161234567", None),  # Russia and Kazakhstan share +7
        ("+78005553535", None),
        ("+882345678901", None),  # a non-geographic calling code
        ("0612345678", "FR"),
    ],
)
def test_phone_type_matches_the_library(raw: str, region: str | None) -> None:
    result = clean_phone(raw, region)
    expected = _library_type(raw, region)
    assert (result.number_type if isinstance(result, PhoneResult) else None) == expected


@MANY
@given(
    st.sampled_from(["1", "7", "44", "49", "33", "91", "55", "61", "81", "262", "599", "882"]),
    st.text(alphabet="0123456789", min_size=6, max_size=11),
)
def test_phone_type_matches_the_library_on_generated_numbers(code: str, digits: str) -> None:
    raw = f"+{code}{digits}"
    result = clean_phone(raw, None)
    expected = _library_type(raw, None)
    assert (result.number_type if isinstance(result, PhoneResult) else None) == expected
