"""Delivery receipt texts as SMSCs really send them, and a round trip through the formatter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.smpp_receipts import STATUS_WORDS, Receipt, format_receipt, parse_receipt

STANDARD = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2311231200 done date:2311231201"
    " stat:DELIVRD err:000 text:Hello"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            STANDARD,
            Receipt(
                "0123456789",
                "delivered",
                "000",
                done_at=datetime(2023, 11, 23, 12, 1, tzinfo=UTC),
                submitted_at=datetime(2023, 11, 23, 12, 0, tzinfo=UTC),
                stat="DELIVRD",
                text="Hello",
            ),
        ),
        (
            "ID:ab12 SUB:001 DLVRD:000 SUBMIT DATE:231123120059 DONE DATE:231123120130"
            " STAT:undeliv ERR:034 Text:x",
            Receipt(
                "ab12",
                "undelivered",
                "034",
                done_at=datetime(2023, 11, 23, 12, 1, 30, tzinfo=UTC),
                submitted_at=datetime(2023, 11, 23, 12, 0, 59, tzinfo=UTC),
                stat="UNDELIV",
                text="x",
            ),
        ),
        (
            "id: 77   sub:1  dlvrd:0  submit_date:2311231200  done_date:  stat: EXPIRED  err:  text:",
            Receipt(
                "77",
                "expired",
                None,
                submitted_at=datetime(2023, 11, 23, 12, 0, tzinfo=UTC),
                stat="EXPIRED",
                text="",
            ),
        ),
        (
            "id:5 stat:REJECTD err:0x0B text:a: b id:9",
            Receipt("5", "rejected", "0x0B", stat="REJECTD", text="a: b id:9"),
        ),
        ("id:5 stat:DELETED", Receipt("5", "failed", None, stat="DELETED")),
        ("id:5 stat:WHATEVER", Receipt("5", "unknown", None, stat="WHATEVER")),
        ("id:5 done date:9913451299 stat:ACCEPTD", Receipt("5", "unknown", None, stat="ACCEPTD")),  # bad date
        ("id:5 done date:23112312 stat:ENROUTE", Receipt("5", "unknown", None, stat="ENROUTE")),  # short date
        ("sub:001 stat:DELIVRD", None),
        ("", None),
        ("valid:1 stat:DELIVRD", None),  # 'id' inside another word is not the id
    ],
)
def test_receipt_texts(text: str, expected: Receipt | None) -> None:
    assert parse_receipt(text) == expected


def test_tlvs_win_over_text() -> None:
    receipt = parse_receipt(STANDARD, receipted_message_id="ABC", message_state=5)
    assert receipt is not None
    assert (receipt.provider_message_id, receipt.status) == ("ABC", "undelivered")
    only_tlvs = parse_receipt("", receipted_message_id="XYZ", message_state=2)
    assert only_tlvs == Receipt("XYZ", "delivered")
    unknown_state = parse_receipt(STANDARD, message_state=99)
    assert unknown_state is not None
    assert unknown_state.status == "delivered"  # falls back to stat


minute = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59), timezones=st.just(UTC)
).map(lambda d: d.replace(second=0, microsecond=0))
receipt_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(str.strip)


@settings(max_examples=300, deadline=None)
@given(
    message_id=st.text("0123456789abcdefABCDEF-", min_size=1, max_size=40),
    stat=st.sampled_from(sorted(STATUS_WORDS)),
    error=st.text("0123456789", min_size=1, max_size=3),
    submitted=st.none() | minute,
    done=st.none() | minute,
    text=receipt_text,
)
def test_round_trip(
    message_id: str, stat: str, error: str, submitted: datetime | None, done: datetime | None, text: str
) -> None:
    formatted = format_receipt(
        message_id, stat, error_code=error, submitted_at=submitted, done_at=done, text=text
    )
    assert parse_receipt(formatted) == Receipt(
        message_id, STATUS_WORDS[stat], error, done_at=done, submitted_at=submitted, stat=stat, text=text
    )
