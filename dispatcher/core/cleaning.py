"""Turning one uploaded row into a clean contact or a reasoned rejection (SPEC §3).

Field-level cleaning lives in :mod:`dispatcher.core.cleaning_fields` and the per-file tallies (dedupe,
buckets) in :mod:`dispatcher.core.cleaning_tally`; this module re-exports both so callers import one place.

Decisions a marketer would ask about:

* A row is kept if at least one channel is usable. A bad phone next to a good e-mail (or the reverse) keeps
  the row on the good channel and records a :class:`FieldWarning`; rejecting it would lose a reachable
  contact, and the warning still shows up in the import report.
* When several columns hold phones (``phone`` and ``mobile``), the first valid value in header order wins;
  the same for e-mails. None of those columns become custom attributes.
* ``not_mobile`` rejects only when the upload says it is for SMS alone, the phone cannot take SMS and there
  is no usable e-mail. A row with just an e-mail in an SMS upload is still a contact of the list.
* The ``region``/``country`` column stays a custom attribute (marketers segment on it) and, when it holds
  an ISO code phonenumbers knows, is also the region used to read that row's national numbers.
* Precedence of rejection reasons: the phone's problem (``invalid_phone``, ``not_mobile``), then the
  e-mail's (``invalid_email``), then ``empty``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatcher.core.cleaning_fields import (
    SMS_CAPABLE_TYPES,
    EmailResult,
    PhoneResult,
    Rejection,
    RejectReason,
    clean_email,
    clean_phone,
    is_supported_region,
)
from dispatcher.core.cleaning_tally import Buckets, CleanContact, DedupeKey, FieldWarning, FileDeduper

__all__ = [
    "SMS_CAPABLE_TYPES",
    "Buckets",
    "CleanContact",
    "CleaningCache",
    "ColumnMap",
    "DedupeKey",
    "EmailResult",
    "FieldWarning",
    "FileDeduper",
    "PhoneResult",
    "RejectReason",
    "Rejection",
    "RowOutcome",
    "canonical_column",
    "classify_row",
    "clean_email",
    "clean_phone",
    "column_map",
]

RowOutcome = CleanContact | Rejection


class PhoneCleaner(Protocol):
    def __call__(self, raw: str, default_region: str | None, /) -> PhoneResult | Rejection: ...


class EmailCleaner(Protocol):
    def __call__(self, raw: str, /, *, check_deliverability: bool = ...) -> EmailResult | Rejection: ...


_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        (
            "phone", "phone_number", "phonenumber", "mobile", "mobile_number", "mobile_phone", "msisdn",
            "cell", "cell_phone", "cellphone", "tel", "telephone",
        ),
        "phone",
    ),
    **dict.fromkeys(("email", "e_mail", "mail", "email_address", "e_mail_address"), "email"),
    **dict.fromkeys(("first_name", "firstname", "first", "given_name", "forename"), "first_name"),
    **dict.fromkeys(("last_name", "lastname", "last", "surname", "family_name"), "last_name"),
    **dict.fromkeys(("timezone", "time_zone", "tz"), "timezone"),
    **dict.fromkeys(("region", "country", "country_code"), "region"),
}  # fmt: skip
_FOLD = str.maketrans({" ": "_", "-": "_", ".": "_"})


def canonical_column(name: str) -> str | None:
    """The field a header name stands for (``"E-Mail"`` → ``"email"``), or None for a custom attribute."""
    return _ALIASES.get(name.strip().lower().translate(_FOLD))


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which header names feed which field; built once per file, not once per row."""

    phone: tuple[str, ...]
    email: tuple[str, ...]
    first_name: str | None
    last_name: str | None
    timezone: str | None
    region: str | None
    attributes: tuple[str, ...]

    @classmethod
    def from_header(cls, names: Iterable[str]) -> ColumnMap:
        found: dict[str, list[str]] = {}
        attributes: list[str] = []
        for name in names:
            field = canonical_column(name)
            if field is not None:
                found.setdefault(field, []).append(name)
            if field is None or field == "region":
                attributes.append(name)
        first = {field: names_[0] for field, names_ in found.items()}
        return cls(
            phone=tuple(found.get("phone", ())),
            email=tuple(found.get("email", ())),
            first_name=first.get("first_name"),
            last_name=first.get("last_name"),
            timezone=first.get("timezone"),
            region=first.get("region"),
            attributes=tuple(attributes),
        )


class CleaningCache:
    """Memo of field results for files whose values repeat (a shared office line, a re-upload).

    Results are immutable, so rows may share them. Opt-in: with the usual unique values a cache only
    costs memory (~300 bytes an entry) and a lookup. Use one per import; lru_cache is thread-safe.
    """

    def __init__(self, maxsize: int = 16_384) -> None:
        self.phone: PhoneCleaner = lru_cache(maxsize=maxsize)(clean_phone) if maxsize else clean_phone
        self.email: EmailCleaner = lru_cache(maxsize=maxsize)(clean_email) if maxsize else clean_email


_UNCACHED = CleaningCache(maxsize=0)


@lru_cache(maxsize=32)
def column_map(names: tuple[str, ...]) -> ColumnMap:
    """Cached :meth:`ColumnMap.from_header`: one file has one header, so rows hit the cache."""
    return ColumnMap.from_header(names)


def classify_row(
    row: Mapping[str, str],
    *,
    default_region: str | None,
    channels: frozenset[str] | None = None,
    check_deliverability: bool = False,
    cache: CleaningCache | None = None,
) -> RowOutcome:
    """Clean one data row; accepted if any channel is usable (see the module docstring for the rules)."""
    cols = column_map(tuple(row))
    region = _row_region(row, cols.region, default_region)
    cleaners = cache or _UNCACHED
    phone, phone_problem = _pick_phone(row, cols.phone, region, cleaners.phone)
    email, email_problem = _pick_email(row, cols.email, check_deliverability, cleaners.email)
    if phone is not None and not phone.sms_capable and channels == frozenset({"sms"}):
        phone_problem = Rejection(RejectReason.NOT_MOBILE, f"{phone.number_type} number cannot receive SMS")
        if email is None:
            return phone_problem
    if phone is None and email is None:
        return _row_rejection(phone_problem, email_problem)
    timezone, tz_problem = _pick_timezone(row, cols.timezone)
    warnings: tuple[FieldWarning, ...] = ()
    if phone_problem or email_problem or tz_problem:
        warnings = _warnings(phone=phone_problem, email=email_problem, timezone=tz_problem)
    return CleanContact(
        phone=phone,
        email=email,
        first_name=_value(row, cols.first_name),
        last_name=_value(row, cols.last_name),
        timezone=timezone,
        attributes={name: value for name in cols.attributes if (value := row[name].strip())},
        warnings=warnings,
    )


def _warnings(**problems: Rejection | None) -> tuple[FieldWarning, ...]:
    return tuple(
        FieldWarning(field, problem.reason, problem.detail)
        for field, problem in problems.items()
        if problem is not None and problem.reason != RejectReason.EMPTY
    )


def _value(row: Mapping[str, str], name: str | None) -> str | None:
    if name is None:
        return None
    return row[name].strip() or None


def _row_region(row: Mapping[str, str], column: str | None, default_region: str | None) -> str | None:
    value = _value(row, column)
    if value is not None and len(value) == 2 and is_supported_region(value):
        return value.upper()
    return default_region


def _pick_phone(
    row: Mapping[str, str], columns: tuple[str, ...], region: str | None, clean: PhoneCleaner
) -> tuple[PhoneResult | None, Rejection | None]:
    first_problem: Rejection | None = None
    for column in columns:
        result = clean(row[column], region)
        if isinstance(result, PhoneResult):
            return result, None
        if first_problem is None or first_problem.reason == RejectReason.EMPTY:
            first_problem = result
    return None, first_problem


def _pick_email(
    row: Mapping[str, str], columns: tuple[str, ...], check_deliverability: bool, clean: EmailCleaner
) -> tuple[EmailResult | None, Rejection | None]:
    first_problem: Rejection | None = None
    for column in columns:
        result = clean(row[column], check_deliverability=check_deliverability)
        if isinstance(result, EmailResult):
            return result, None
        if first_problem is None or first_problem.reason == RejectReason.EMPTY:
            first_problem = result
    return None, first_problem


def _row_rejection(phone_problem: Rejection | None, email_problem: Rejection | None) -> Rejection:
    for problem in (phone_problem, email_problem):
        if problem is not None and problem.reason != RejectReason.EMPTY:
            return problem
    return Rejection(RejectReason.EMPTY, "no phone number and no e-mail address")


def _pick_timezone(row: Mapping[str, str], column: str | None) -> tuple[str | None, Rejection | None]:
    value = _value(row, column)
    if value is None:
        return None, None
    if _is_iana_zone(value):
        return value, None
    return None, Rejection(RejectReason.INVALID_TIMEZONE, f"unknown IANA time zone {value[:64]!r}")


@lru_cache(maxsize=1024)
def _is_iana_zone(name: str) -> bool:
    """Reads the bundled tz database (static data, like phonenumbers' metadata); cached as zones repeat."""
    if name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
