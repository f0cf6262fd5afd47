"""Phone/e-mail cleaning, row classification, in-file dedupe and the bucket invariant."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as pn_timezone

from dispatcher.core.cleaning import (
    Buckets,
    CleanContact,
    CleaningCache,
    ColumnMap,
    EmailResult,
    FieldWarning,
    FileDeduper,
    PhoneResult,
    Rejection,
    RejectReason,
    canonical_column,
    classify_row,
    clean_email,
    clean_phone,
)

FAST = settings(max_examples=200, deadline=None)


# --- phones -------------------------------------------------------------------------------------------

PHONE_CASES = [
    # raw, default region, E.164, type, sms_capable
    ("(201) 555-0123", "US", "+12015550123", "fixed_line_or_mobile", True),
    ("201.555.0123", "US", "+12015550123", "fixed_line_or_mobile", True),
    ("1 (201) 555-0123", "US", "+12015550123", "fixed_line_or_mobile", True),
    ("  +1 201 555 0123 x12 ", None, "+12015550123", "fixed_line_or_mobile", True),
    ("07400 123456", "GB", "+447400123456", "mobile", True),
    ("020 7946 0958", "GB", "+442079460958", "fixed_line", False),
    ("+44 (0)20 7946 0958", "DE", "+442079460958", "fixed_line", False),
    ("030/12345678", "DE", "+493012345678", "fixed_line", False),
    ("0151 12345678", "DE", "+4915112345678", "mobile", True),
    ("06 12 34 56 78", "FR", "+33612345678", "mobile", True),
    ("06.12.34.56.78", "FR", "+33612345678", "mobile", True),
    ("098765 43210", "IN", "+919876543210", "mobile", True),
    ("(11) 91234-5678", "BR", "+5511912345678", "mobile", True),
    ("090-1234-5678", "JP", "+819012345678", "mobile", True),
    ("0412 345 678", "AU", "+61412345678", "mobile", True),
    ("＋４４ ７４００ １２３４５６", None, "+447400123456", "mobile", True),  # full-width
    ("０１５１－１２３４５６７８", "DE", "+4915112345678", "mobile", True),  # full-width, no plus
    ("0044 7400 123456", "US", "+447400123456", "mobile", True),  # 00 where the region's IDD is 011
    ("0011 44 7400 123456", "AU", "+447400123456", "mobile", True),  # the region's own IDD
    ("00447400123456", None, "+447400123456", "mobile", True),
    ("tel:+1-201-555-0123", None, "+12015550123", "fixed_line_or_mobile", True),
    ("TEL:+33612345678;phone-context=example.com", None, "+33612345678", "mobile", True),
    ("1.2015550123E10", "US", "+12015550123", "fixed_line_or_mobile", True),  # Excel float
    ("1.2015550123e+10", "US", "+12015550123", "fixed_line_or_mobile", True),
    ("12015550123.0", "US", "+12015550123", "fixed_line_or_mobile", True),
    ("4.47400123456E11", "US", "+447400123456", "mobile", True),  # float of a foreign number
    ("'07400 123456", "GB", "+447400123456", "mobile", True),  # Excel text apostrophe
    ("'+33 6 12 34 56 78", "US", "+33612345678", "mobile", True),
    ("+44 56 1234 5678", None, "+445612345678", "voip", False),
    ("+44 76 4012 3456", None, "+447640123456", "pager", False),
    ("+1 800 234 5678", None, "+18002345678", "toll_free", False),
    ("+44 901 234 5678", None, "+449012345678", "premium_rate", False),
]


@pytest.mark.parametrize(("raw", "region", "e164", "number_type", "sms"), PHONE_CASES)
def test_clean_phone_accepts(raw: str, region: str | None, e164: str, number_type: str, sms: bool) -> None:
    result = clean_phone(raw, region)
    assert isinstance(result, PhoneResult), result
    assert (result.e164, result.number_type, result.sms_capable) == (e164, number_type, sms)


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "US", RejectReason.EMPTY),
        ("   \t ", "US", RejectReason.EMPTY),
        ("'", "US", RejectReason.EMPTY),
        ("12345", "US", RejectReason.INVALID_PHONE),  # too short
        ("+1 201 555", None, RejectReason.INVALID_PHONE),
        ("call me maybe", "US", RejectReason.INVALID_PHONE),
        ("n/a", "GB", RejectReason.INVALID_PHONE),
        ("2015550123", None, RejectReason.INVALID_PHONE),  # national number with no region: not +20…
        ("447400123456", None, RejectReason.INVALID_PHONE),  # text without its plus: not guessed
        ("555-0100", "US", RejectReason.INVALID_PHONE),
        ("1.20155E+10", "US", RejectReason.INVALID_PHONE),  # float that lost its last digits
        ("12015550123.5", "US", RejectReason.INVALID_PHONE),  # not an integer
        ("+999 1234 5678", None, RejectReason.INVALID_PHONE),  # no such country code
        ("9" * 300, "US", RejectReason.INVALID_PHONE),
        ("tel:", "US", RejectReason.EMPTY),
        ("tel:call-me", "US", RejectReason.INVALID_PHONE),
    ],
)
def test_clean_phone_rejects(raw: str, region: str | None, reason: RejectReason) -> None:
    result = clean_phone(raw, region)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.detail


@pytest.mark.parametrize(
    ("raw", "region", "zones"),
    [
        ("+44 20 7946 0958", None, ("Europe/London",)),
        ("+1 201 555 0123", None, ("America/New_York",)),
        ("+33 6 12 34 56 78", None, ("Europe/Paris",)),
        ("+800 1234 5678", None, ()),  # non-geographic: the Etc/Unknown placeholder is dropped
    ],
)
def test_phone_time_zones_and_region(raw: str, region: str | None, zones: tuple[str, ...]) -> None:
    result = clean_phone(raw, region)
    assert isinstance(result, PhoneResult)
    assert result.time_zones == zones
    assert result.region == (
        None if raw.startswith("+800") else phonenumbers.region_code_for_number(phonenumbers.parse(raw))
    )


@FAST
@given(st.text(alphabet="0123456789", min_size=4, max_size=15))
def test_phone_matches_the_bare_library_on_e164_input(digits: str) -> None:
    """The shortcuts (one type lookup, cached country zones) must agree with the public calls."""
    raw = "+" + digits
    result = clean_phone(raw, None)
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        assert isinstance(result, Rejection)
        return
    if not phonenumbers.is_valid_number(number):
        assert isinstance(result, Rejection)
        assert result.reason == RejectReason.INVALID_PHONE
        return
    assert isinstance(result, PhoneResult)
    assert result.e164 == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    expected_type = phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(number)).lower()
    assert result.number_type == expected_type
    zones = tuple(z for z in pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    assert result.time_zones == zones


@FAST
@given(st.text(max_size=40), st.sampled_from([None, "US", "GB", "DE", "IN"]))
def test_clean_phone_never_raises(raw: str, region: str | None) -> None:
    result = clean_phone(raw, region)
    assert isinstance(result, PhoneResult | Rejection)
    if isinstance(result, PhoneResult):
        assert result.e164.startswith("+")
        assert result.e164[1:].isdigit()


# --- e-mails ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized", "ascii_email"),
    [
        ("ann@example.com", "ann@example.com", "ann@example.com"),
        ("  Ann.Smith@EXAMPLE.Com ", "Ann.Smith@example.com", "Ann.Smith@example.com"),
        ("mailto:ann@example.com", "ann@example.com", "ann@example.com"),
        ("ann+promo@sub.example.co.uk", "ann+promo@sub.example.co.uk", "ann+promo@sub.example.co.uk"),
        ("user@BÜCHER.de", "user@bücher.de", "user@xn--bcher-kva.de"),
        ("user@xn--bcher-kva.de", "user@bücher.de", "user@xn--bcher-kva.de"),
        ("ñandú@example.com", "ñandú@example.com", None),  # internationalized local part: no ASCII form
    ],
)
def test_clean_email_accepts(raw: str, normalized: str, ascii_email: str | None) -> None:
    result = clean_email(raw)
    assert isinstance(result, EmailResult), result
    assert (result.normalized, result.ascii_email) == (normalized, ascii_email)
    assert result.domain == normalized.split("@")[1]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", RejectReason.EMPTY),
        ("  ", RejectReason.EMPTY),
        ("ann", RejectReason.INVALID_EMAIL),
        ("ann@", RejectReason.INVALID_EMAIL),
        ("@example.com", RejectReason.INVALID_EMAIL),
        ("ann@@example.com", RejectReason.INVALID_EMAIL),
        ("ann@localhost", RejectReason.INVALID_EMAIL),
        ("ann smith@example.com", RejectReason.INVALID_EMAIL),
        ("ann@example..com", RejectReason.INVALID_EMAIL),
        ("+44 20 7946 0958", RejectReason.INVALID_EMAIL),
    ],
)
def test_clean_email_rejects(raw: str, reason: RejectReason) -> None:
    result = clean_email(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason


@FAST
@given(st.text(max_size=60))
def test_clean_email_never_raises(raw: str) -> None:
    result = clean_email(raw)
    assert isinstance(result, EmailResult | Rejection)
    if isinstance(result, EmailResult):
        assert "@" in result.normalized
        assert result.domain == result.domain.lower()


# --- columns and rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("phone", "phone"), (" Mobile ", "phone"), ("MSISDN", "phone"), ("Cell", "phone"), ("tel", "phone"),
        ("Phone Number", "phone"), ("email", "email"), ("E-Mail", "email"), ("mail", "email"),
        ("Email Address", "email"), ("first_name", "first_name"), ("FirstName", "first_name"),
        ("First Name", "first_name"), ("last name", "last_name"), ("Surname", "last_name"),
        ("timezone", "timezone"), ("Time Zone", "timezone"), ("TZ", "timezone"), ("Region", "region"),
        ("country", "region"), ("member level", None), ("phones", None), ("", None),
    ],
)  # fmt: skip
def test_canonical_column(name: str, field: str | None) -> None:
    assert canonical_column(name) == field


def test_column_map_keeps_region_as_attribute_and_all_phone_columns() -> None:
    cols = ColumnMap.from_header(["Phone", "Mobile", "E-mail", "First Name", "Country", "Level", "TZ"])
    assert cols.phone == ("Phone", "Mobile")
    assert cols.email == ("E-mail",)
    assert (cols.first_name, cols.last_name, cols.timezone, cols.region) == (
        "First Name",
        None,
        "TZ",
        "Country",
    )
    assert cols.attributes == ("Country", "Level")


MOBILE = "+33 6 12 34 56 78"
LANDLINE = "+44 20 7946 0958"
SMS = frozenset({"sms"})


@pytest.mark.parametrize(
    ("phone", "email", "channels", "e164", "address", "warnings"),
    [
        (MOBILE, "ann@example.com", None, "+33612345678", "ann@example.com", ()),
        ("garbage", "ann@example.com", None, None, "ann@example.com", (("phone", "invalid_phone"),)),
        (MOBILE, "not-an-email", None, "+33612345678", None, (("email", "invalid_email"),)),
        (MOBILE, "", SMS, "+33612345678", None, ()),
        ("", "ann@example.com", SMS, None, "ann@example.com", ()),  # SMS hint, e-mail only: still a contact
        (LANDLINE, "", None, "+442079460958", None, ()),  # no hint: landlines are kept, just not SMS-able
        (LANDLINE, "ann@example.com", SMS, "+442079460958", "ann@example.com", (("phone", "not_mobile"),)),
        (LANDLINE, "", frozenset({"sms", "email"}), "+442079460958", None, ()),
    ],
)
def test_classify_row_accepts(
    phone: str,
    email: str,
    channels: frozenset[str] | None,
    e164: str | None,
    address: str | None,
    warnings: tuple[tuple[str, str], ...],
) -> None:
    outcome = classify_row({"phone": phone, "email": email}, default_region="US", channels=channels)
    assert isinstance(outcome, CleanContact), outcome
    assert (outcome.phone.e164 if outcome.phone else None) == e164
    assert (outcome.email.normalized if outcome.email else None) == address
    assert tuple((w.field, w.reason) for w in outcome.warnings) == warnings


@pytest.mark.parametrize(
    ("phone", "email", "channels", "reason"),
    [
        ("", "", None, "empty"),
        ("  ", " ", SMS, "empty"),
        ("garbage", "", None, "invalid_phone"),
        ("", "nope", None, "invalid_email"),
        ("garbage", "nope", None, "invalid_phone"),  # the phone's problem comes first
        (LANDLINE, "", SMS, "not_mobile"),
        (LANDLINE, "nope", SMS, "not_mobile"),
        ("+44 56 1234 5678", "", SMS, "not_mobile"),  # VoIP is not SMS-capable
    ],
)
def test_classify_row_rejects(phone: str, email: str, channels: frozenset[str] | None, reason: str) -> None:
    outcome = classify_row({"phone": phone, "email": email}, default_region="US", channels=channels)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == reason


def _phone(raw: str) -> PhoneResult:
    result = clean_phone(raw, None)
    assert isinstance(result, PhoneResult)
    return result


def test_classify_row_maps_aliases_attributes_and_row_region() -> None:
    row = {
        "Mobile": "06 12 34 56 78",  # French national format: read with the row's Country, not the default
        "E-Mail": "Ann@Example.com",
        "First Name": " Ann ",
        "surname": "Lee",
        "TZ": "Europe/Paris",
        "Member Level": "gold",
        "Country": "fr",
        "Empty Column": "  ",
    }
    outcome = classify_row(row, default_region="US", channels=None)
    assert outcome == CleanContact(
        phone=_phone("+33612345678"),
        email=EmailResult("Ann@example.com", "Ann@example.com", "example.com"),
        first_name="Ann",
        last_name="Lee",
        timezone="Europe/Paris",
        attributes={"Member Level": "gold", "Country": "fr"},
        warnings=(),
    )


def test_classify_row_takes_first_valid_phone_column_and_warns_on_bad_zone() -> None:
    row = {
        "phone": "n/a",
        "mobile": "07400 123456",
        "email": "",
        "timezone": "Mars/Olympus",
        "region": "North",
    }
    outcome = classify_row(row, default_region="GB", channels=None)
    assert isinstance(outcome, CleanContact)
    assert outcome.phone is not None
    assert outcome.phone.e164 == "+447400123456"
    assert outcome.timezone is None
    assert outcome.warnings == (
        FieldWarning("timezone", "invalid_timezone", "unknown IANA time zone 'Mars/Olympus'"),
    )
    assert outcome.attributes == {"region": "North"}


@pytest.mark.parametrize("zone", ["../../etc/passwd", "/etc/localtime", "Europe/../Europe/Paris"])
def test_timezone_column_refuses_paths(zone: str) -> None:
    outcome = classify_row({"email": "a@example.com", "tz": zone}, default_region=None, channels=None)
    assert isinstance(outcome, CleanContact)
    assert outcome.timezone is None
    assert [w.reason for w in outcome.warnings] == ["invalid_timezone"]


def test_cleaning_cache_gives_the_same_outcomes_and_reuses_results() -> None:
    cache = CleaningCache(maxsize=8)
    rows = [{"phone": MOBILE, "email": "ann@example.com"}, {"phone": MOBILE, "email": "bob@example.com"}]
    cached = [classify_row(row, default_region="US", channels=None, cache=cache) for row in rows]
    plain = [classify_row(row, default_region="US", channels=None) for row in rows]
    assert cached == plain
    assert isinstance(cached[0], CleanContact)
    assert isinstance(cached[1], CleanContact)
    assert cached[0].phone is cached[1].phone  # cleaned once


# --- dedupe and buckets -------------------------------------------------------------------------------


def test_dedupe_key_prefers_phone_then_folded_email() -> None:
    both = classify_row({"phone": MOBILE, "email": "Ann@Example.com"}, default_region=None, channels=None)
    email_only = classify_row({"phone": "", "email": "Ann@Example.com"}, default_region=None, channels=None)
    assert isinstance(both, CleanContact)
    assert isinstance(email_only, CleanContact)
    assert both.dedupe_key == "+33612345678"
    assert email_only.dedupe_key == "ann@example.com"


def test_file_deduper_remembers_across_growth() -> None:
    deduper = FileDeduper()
    keys = [f"+4474001{n:05d}" for n in range(5000)]  # several times the initial table
    assert [deduper.seen(k) for k in keys] == [False] * len(keys)
    assert len(deduper) == 5000
    assert all(deduper.seen(k) for k in keys)
    assert not deduper.seen("ann@example.com")
    assert deduper.seen("ann@example.com")
    assert len(deduper) == 5001


def test_file_deduper_presized_table() -> None:
    deduper = FileDeduper(expected=100_000)
    assert not deduper.seen("x")
    assert deduper.seen("x")


def test_buckets_count_merge_and_dump() -> None:
    contact = CleanContact(phone=None, email=EmailResult("a@b.co", "a@b.co", "b.co"))
    first, second = Buckets(), Buckets()
    first.add(contact)
    first.add(Rejection(RejectReason.INVALID_PHONE))
    first.add(Rejection(RejectReason.INVALID_PHONE))
    second.add(Rejection(RejectReason.EMPTY))
    second.add_duplicate()
    second.add_suppressed()
    first.merge(second)
    assert first.as_dict() == {
        "rows": 6,
        "accepted": 1,
        "rejected": 3,
        "duplicate": 1,
        "suppressed": 1,
        "reasons": {"empty": 1, "invalid_phone": 2},
    }


GARBAGE_VALUE = st.one_of(
    st.sampled_from(
        [
            "", " ", MOBILE, LANDLINE, "07400 123456", "1.2015550123E10", "(201) 555-0123", "n/a", "@@",
            "ann@example.com", "ANN@example.com", "bob@example.org", "not@", "＋４４ ７４００ １２３４５６",
        ]
    ),
    st.text(max_size=20),
)  # fmt: skip


@FAST
@given(
    rows=st.lists(
        st.fixed_dictionaries({"phone": GARBAGE_VALUE, "email": GARBAGE_VALUE, "x": GARBAGE_VALUE})
    ),
    channels=st.sampled_from([None, SMS, frozenset({"email"})]),
    suppressed=st.sets(st.sampled_from(["+33612345678", "ann@example.com", "+12015550123"])),
)
def test_every_row_lands_in_exactly_one_bucket(
    rows: list[dict[str, str]], channels: frozenset[str] | None, suppressed: set[str]
) -> None:
    buckets, deduper, landed = Buckets(), FileDeduper(), []
    for row in rows:
        outcome = classify_row(row, default_region="US", channels=channels)
        if isinstance(outcome, Rejection):
            buckets.add(outcome)
            landed.append(str(outcome.reason))
        elif deduper.seen(outcome.dedupe_key):
            buckets.add_duplicate()
            landed.append("duplicate")
        elif outcome.dedupe_key in suppressed:
            buckets.add_suppressed()
            landed.append("suppressed")
        else:
            buckets.add(outcome)
            landed.append("accepted")
            assert outcome.phone is not None or outcome.email is not None
    assert buckets.rows == len(rows) == len(landed)
    assert buckets.accepted + buckets.rejected + buckets.duplicate + buckets.suppressed == len(rows)
    assert sum(buckets.reasons.values()) == buckets.rejected
    assert buckets.accepted == landed.count("accepted")
    assert buckets.duplicate == landed.count("duplicate")
    assert set(buckets.reasons) <= {"empty", "invalid_phone", "invalid_email", "not_mobile"}
