"""Cleaning of single phone and e-mail values, the hot path of a list import.

A million-row import spends nearly all of its CPU here, so the code does the least possible around the
libraries: a translate table instead of regexes, one ``region_code_for_number`` lookup instead of the three
hidden in ``is_valid_number`` + ``number_type`` + ``time_zones_for_number``, and the country-level time zones
of non-geographic numbers cached per country code. Callers that see repeated values may cache results
themselves (both functions are pure); a cache inside would only cost memory for the usual unique values.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    DOT_ATOM_TEXT_INTL,
    EMAIL_MAX_LENGTH,
)
from phonenumbers import PhoneNumberType
from phonenumbers import re_util as pn_re_util
from phonenumbers import timezone as pn_timezone

__all__ = [
    "SMS_CAPABLE_TYPES",
    "EmailResult",
    "PhoneResult",
    "RejectReason",
    "Rejection",
    "clean_email",
    "clean_phone",
    "is_supported_region",
]


class RejectReason(StrEnum):
    """Machine-readable reasons a row (or one of its fields) is not usable; stable API values."""

    EMPTY = "empty"
    INVALID_PHONE = "invalid_phone"
    INVALID_EMAIL = "invalid_email"
    NOT_MOBILE = "not_mobile"
    MALFORMED_ROW = "malformed_row"
    INVALID_TIMEZONE = "invalid_timezone"  # only ever a field warning: a bad zone column never rejects a row


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a value or a row was refused; ``detail`` is for humans, ``reason`` for machines."""

    reason: RejectReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PhoneResult:
    e164: str
    number_type: str
    region: str | None
    time_zones: tuple[str, ...]
    sms_capable: bool


@dataclass(frozen=True, slots=True)
class EmailResult:
    normalized: str
    ascii_email: str | None
    domain: str


# MOBILE and FIXED_LINE_OR_MOBILE (most of NANPA, where the plan does not tell them apart) receive SMS.
# VOIP is excluded: many VoIP ranges cannot take A2P SMS and carriers filter marketing traffic to them, so
# sending costs money and sender reputation for little reach. PAGER is excluded too: pagers use paging
# protocols, not SMS. Such contacts stay reachable by e-mail and are counted, never silently dropped.
SMS_CAPABLE_TYPES = frozenset({"mobile", "fixed_line_or_mobile"})

# phonenumbers otherwise calls re.compile (a cache lookup costing ~1.5 µs) a dozen times per number: keeping
# its compiled metadata patterns (a few thousand at most, bounded by the metadata) makes parsing ~18% cheaper.
pn_re_util.enable_pattern_cache()

_TYPE_NAMES: dict[int, str] = {
    value: str(PhoneNumberType.to_string(value)).lower() for value in PhoneNumberType.values()
}
_UNKNOWN_TZ = pn_timezone.UNKNOWN_TIMEZONE
# Separators people and spreadsheets put in numbers; phonenumbers would skip them too, but more slowly.
_SEPARATORS = str.maketrans("", "", " \t\u00a0\u2009\u202f.-‐‑‒–—()[]/\\")
_SPREADSHEET_FLOAT = re.compile(r"\+?\d+(?:\.\d+)?(?:[eE]\+?\d+)?")


def clean_phone(raw: str, default_region: str | None) -> PhoneResult | Rejection:
    """Parse a phone value as people and spreadsheets write it; only valid numbers come back."""
    text = _strip_decorations(raw)
    if not text:
        return Rejection(RejectReason.EMPTY, "no phone number")
    candidates = _candidates(text)
    if not candidates:
        return Rejection(RejectReason.INVALID_PHONE, "spreadsheet number lost its last digits")
    for candidate in candidates:
        result = _parse_valid(candidate, default_region)
        if result is not None:
            return result
    where = f" for region {default_region}" if default_region else " (no default region)"
    return Rejection(RejectReason.INVALID_PHONE, f"not a valid phone number{where}")


def _strip_decorations(raw: str) -> str:
    """Undo full-width digits, Excel's text apostrophe and ``tel:`` URIs, which phonenumbers would refuse."""
    text = raw.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).strip()
    if text.startswith("'"):
        text = text[1:].lstrip()
    if text[:4].lower() == "tel:":
        text = text[4:].split(";", 1)[0]
    return text


def _candidates(text: str) -> list[str]:
    """The spellings to try, best first: the value itself, then with the ``+`` a spreadsheet or ``00`` hid.

    Only a spreadsheet float gets a ``+`` guessed (Excel drops it from every number it stores); a bare
    ``2015550123`` with no default region is refused rather than read as +20 (Egypt): a wrong guess would
    text a stranger.
    """
    if ("e" in text or "E" in text or text.endswith(".0")) and _SPREADSHEET_FLOAT.fullmatch(text):
        digits = _float_digits(text)
        return [digits, "+" + digits] if digits else []
    compact = text.translate(_SEPARATORS)
    if compact.startswith("00"):
        return [compact, "+" + compact[2:]]
    return [compact]


def _float_digits(text: str) -> str:
    """Digits of a number a spreadsheet wrote as a float, exactly (Decimal, not float), or '' if truncated.

    ``1.5551234567E10`` keeps every digit, but ``1.55512E+10`` has lost the tail: Excel would have padded
    it with zeros and we would text a stranger, so such values are refused.
    """
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        return ""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent > 0 or value != value.to_integral_value():
        return ""
    return str(abs(value.to_integral_value()))


def _parse_valid(candidate: str, default_region: str | None) -> PhoneResult | None:
    try:
        number = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException:
        return None
    # is_valid_number(n) is exactly "the number's type in its own region is known"; computing the type
    # once here saves two of the three region lookups the separate library calls would do.
    region = phonenumbers.region_code_for_number(number)
    if region is None:
        return None
    ntype = _number_type(number, region)
    if ntype == PhoneNumberType.UNKNOWN:
        return None
    type_name = _TYPE_NAMES.get(ntype, "unknown")
    return PhoneResult(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        number_type=type_name,
        region=None if region == "001" else region,
        time_zones=_time_zones(number, ntype),
        sms_capable=type_name in SMS_CAPABLE_TYPES,
    )


def _number_type(number: phonenumbers.PhoneNumber, region: str) -> int:
    """``number_type`` given the region already found: the public function looks the region up again, which
    for +1 numbers means matching the number against the US plan a second time (~10% of an import's CPU)."""
    if _TYPE_HELPER is None:  # pragma: no cover - a phonenumbers release without the helper
        return int(phonenumbers.number_type(number))
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        number.country_code or 0, region
    )
    if metadata is None:
        return int(PhoneNumberType.UNKNOWN)
    return int(_TYPE_HELPER(phonenumbers.national_significant_number(number), metadata))


# The body of phonenumbers.number_type after its region lookup; private, hence the fallback above.
_TYPE_HELPER = getattr(phonenumbers.phonenumberutil, "_number_type_helper", None)


def _time_zones(number: phonenumbers.PhoneNumber, ntype: int) -> tuple[str, ...]:
    country_code = number.country_code or 0
    if phonenumbers.is_number_type_geographical(ntype, country_code):
        zones = pn_timezone.time_zones_for_geographical_number(number)
        return tuple(zone for zone in zones if zone != _UNKNOWN_TZ)
    return _country_time_zones(country_code, number)


def _country_time_zones(country_code: int, number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    """Non-geographic numbers (mobiles in most plans) get their country's zones: the same for every number."""
    cached = _COUNTRY_ZONES.get(country_code)
    if cached is None:
        zones = pn_timezone.time_zones_for_number(number)
        cached = _COUNTRY_ZONES[country_code] = tuple(zone for zone in zones if zone != _UNKNOWN_TZ)
    return cached


# Bounded by the ~250 country calling codes; module-level because it is pure metadata, like phonenumbers'.
_COUNTRY_ZONES: dict[int, tuple[str, ...]] = {}


def clean_email(raw: str, *, check_deliverability: bool = False) -> EmailResult | Rejection:
    """Validate and normalize an address. ``check_deliverability`` does DNS I/O: off by default, and a
    caller that turns it on must run this off the event loop."""
    text = raw.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if text[:7].lower() == "mailto:":
        text = text[7:]
    if not text:
        return Rejection(RejectReason.EMPTY, "no e-mail address")
    if "@" not in text:
        return Rejection(RejectReason.INVALID_EMAIL, "an e-mail address must have an @-sign")
    if not check_deliverability and (fast := _plain_email(text)) is not None:
        return fast
    try:
        checked = validate_email(text, check_deliverability=check_deliverability)
    except EmailNotValidError as exc:
        return Rejection(RejectReason.INVALID_EMAIL, str(exc))
    domain = checked.domain.lower()
    return EmailResult(
        normalized=f"{checked.local_part}@{domain}",
        ascii_email=checked.ascii_email,
        domain=domain,
    )


_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_HOSTNAME_CHARS = re.compile(r"[A-Za-z0-9.-]+\Z")


def _plain_email(text: str) -> EmailResult | None:
    """email-validator's result for the usual address, at a fraction of its cost; None to ask the library.

    Exactly the library's outcome, because the library validates the local part and the domain apart: an
    unquoted dot-atom local part of ASCII atext and letters comes back from it unchanged (with no ASCII
    form when it holds a non-ASCII letter), the domain's result is the library's own (from a probe address,
    cached per domain), and the length limits are checked as it checks them. Only successes are taken from
    here, so every rejection keeps the library's message.
    """
    local, _, domain = text.rpartition("@")
    if not _HOSTNAME_CHARS.match(domain):
        return None
    if local.isascii():
        if not DOT_ATOM_TEXT.match(local) or local.lower() in _CASE_INSENSITIVE:  # the library lower-cases
            return None
        ascii_local: str | None = local
    elif DOT_ATOM_TEXT_INTL.match(local) and _letters_beyond_ascii(local):
        ascii_local = None
    else:
        return None
    known = _domain_result(domain)
    if known is None:
        return None
    unicode_domain, ascii_domain = known
    normalized = f"{local}@{unicode_domain}"
    for address in (text, normalized, f"{local}@{ascii_domain}"):
        if len(address.encode()) > EMAIL_MAX_LENGTH:
            return None
    lowered = unicode_domain.lower()
    return EmailResult(
        normalized=f"{local}@{lowered}",
        ascii_email=f"{ascii_local}@{ascii_domain}" if ascii_local else None,
        domain=lowered,
    )


def _letters_beyond_ascii(local: str) -> bool:
    """Non-ASCII characters that are all letters, already in NFC: what the library passes unchanged."""
    if not unicodedata.is_normalized("NFC", local):
        return False
    return all(char.isascii() or unicodedata.category(char)[0] == "L" for char in local)


@lru_cache(maxsize=4096)
def _domain_result(domain: str) -> tuple[str, str] | None:
    """The library's (domain, ascii_domain) for a domain, or None when it refuses it; few domains repeat."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, checked.ascii_domain


@lru_cache(maxsize=64)
def is_supported_region(code: str) -> bool:
    """Whether ``code`` is an ISO 3166 region phonenumbers knows; used to honour a per-row region column."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS
