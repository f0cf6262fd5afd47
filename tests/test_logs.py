from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.logs import configure_logging, get_logger, mask_pii


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("sent to +14155552671", "4155552671"),
        ("sent to +44 20 7946 0958 ok", "7946 0958"),
        ("call (415) 555-2671 now", "555-2671"),
        ("mail jane.doe@example.com bounced", "jane.doe@example.com"),
        ("to=Jane.Doe+promo@Example.co.uk", "Doe+promo@"),
    ],
)
def test_mask_hides_personal_data(text: str, hidden: str) -> None:
    masked = mask_pii(text)
    assert hidden not in masked
    assert masked != text


@pytest.mark.parametrize("text", ["campaign 42 batch 7", "took 1234 ms", "2026-11-23T10:00:00Z", "id=123456"])
def test_mask_keeps_ordinary_numbers(text: str) -> None:
    assert mask_pii(text) == text


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"\+[1-9][0-9]{7,13}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9._]{2,15}@[a-z]{3,10}\.(com|org|de)", fullmatch=True),
)
def test_structured_logs_never_carry_numbers_or_addresses(phone: str, email: str) -> None:
    configure_logging("INFO", json=True)
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buffer))
        get_logger("t").info("send", to=phone, extra={"email": email, "list": [phone]}, note=f"for {email}")
    line = buffer.getvalue()
    assert json.loads(line)["event"] == "send"
    assert phone[1:] not in line
    assert email not in line
