"""Reply keywords, receipt status ranking, message keys, webhook signatures, open tokens and machine opens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.inbound import (
    FINAL_STATUSES,
    LEDGER_STATE_OF,
    classify_reply,
    email_signature,
    inbound_url,
    is_final,
    parse_message_key,
    receipt_status,
    status_callback_url,
    status_rank,
    verify_email_signature,
)
from dispatcher.core.opens import (
    PIXEL_GIF,
    MessageRef,
    is_machine,
    message_token,
    open_pixel_url,
    read_message_token,
)

SECRET = "test-secret"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# ------------------------------------------------------------------------------------------ keywords


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", "optout"),
        ("stop", "optout"),
        ("  Stop.  ", "optout"),
        ("STOP!", "optout"),
        ("\tstop\n", "optout"),
        ("ＳＴＯＰ", "optout"),  # full-width letters
        ("ｓｔｏｐ！", "optout"),
        ("Stop All", "optout"),
        ("STOPALL", "optout"),
        ("unsubscribe", "optout"),
        ("End", "optout"),
        ("QUIT", "optout"),
        ("cancel", "optout"),
        ("opt-out", "optout"),
        ("OPTOUT", "optout"),
        ("revoke", "optout"),
        ("START", "optin"),
        ("start", "optin"),
        ("Unstop", "optin"),
        ("YES", "reply"),  # answers a question far more often than it re-subscribes
        ("HELP", "help"),
        ("help?", "help"),
        ("Info", "help"),
        ("please stop texting me", "reply"),
        ("stopp", "reply"),
        ("don't stop", "reply"),
        ("Thanks, see you Saturday", "reply"),
        ("", "reply"),
        ("   ", "reply"),
        ("🛑", "reply"),
        ("STOP " * 20, "reply"),  # too long to be a bare keyword
    ],
)
def test_reply_keywords(text: str, kind: str) -> None:
    assert classify_reply(text) == kind


@given(
    st.sampled_from(["STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "CANCEL", "OPTOUT", "REVOKE"]),
    st.text(alphabet=" \t\n.!?,;:-_*\"'()", max_size=4),
    st.text(alphabet=" \t\n.!?,;:-_*\"'()", max_size=4),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_any_case_and_padding_of_an_optout_word_opts_out(
    word: str, before: str, after: str, upper: list[bool]
) -> None:
    mixed = "".join(c.upper() if up else c.lower() for c, up in zip(word, upper, strict=False))
    assert classify_reply(before + mixed + after) == "optout"


@given(st.text(max_size=200))
def test_classification_never_fails_and_is_one_of_four(text: str) -> None:
    assert classify_reply(text) in {"optout", "optin", "help", "reply"}


# ------------------------------------------------------------------------------------------ statuses


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("accepted", "queued"),
        ("queued", "queued"),
        ("sending", "sending"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "delivered"),
        ("undelivered", "undelivered"),
        ("failed", "failed"),
        ("Delivered ", "delivered"),
        ("DELIVRD", "delivered"),
        ("EXPIRED", "undelivered"),
        ("UNDELIV", "undelivered"),
        ("REJECTD", "failed"),
        ("DELETED", "failed"),
        ("ACCEPTD", "sent"),
        ("ENROUTE", "sent"),
        ("UNKNOWN", None),
        ("received", None),
        ("", None),
        (None, None),
    ],
)
def test_status_words(word: str | None, status: str | None) -> None:
    assert receipt_status(word) == status


def test_status_ranking_and_finality() -> None:
    assert status_rank("queued") < status_rank("sending") < status_rank("sent") < status_rank("delivered")
    assert status_rank("delivered") == status_rank("undelivered") == status_rank("failed")
    assert status_rank("planned") == 0
    assert {s for s in ("queued", "sending", "sent", *FINAL_STATUSES) if is_final(s)} == FINAL_STATUSES
    assert LEDGER_STATE_OF == {"delivered": "delivered", "undelivered": "failed", "failed": "failed"}


@given(st.lists(st.sampled_from(["queued", "sending", "sent", "delivered", "undelivered", "failed"])))
def test_folding_receipts_by_rank_never_goes_back_nor_replaces_a_final(receipts: list[str]) -> None:
    """The rule the guarded UPDATE applies: move only up, and never away from a final status."""
    state = "sent"
    seen_final = None
    for status in receipts:
        if not is_final(state) and status_rank(status) > status_rank(state):
            state = status
        if seen_final is None and is_final(status):
            seen_final = status
    assert state == (seen_final or "sent")


# ------------------------------------------------------------------------------------- message keys


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("<dsp-12-345@mail.example.com>", (12, 345)),
        ("dsp-1-2", (1, 2)),
        ("Message-ID: <dsp-7-99@x>", (7, 99)),
        ("<abc@example.com>", None),
        ("<dsp-0-5@x>", None),
        ("<xdsp-1-2@x>", None),
        ("", None),
        (None, None),
    ],
)
def test_message_keys(text: str | None, key: tuple[int, int] | None) -> None:
    assert parse_message_key(text) == key


def test_webhook_urls() -> None:
    assert status_callback_url("https://d.example/", 7) == "https://d.example/hooks/twilio/7/status"
    assert inbound_url("https://d.example", 7) == "https://d.example/hooks/twilio/7/inbound"


@given(st.binary(max_size=300), st.text(min_size=1, max_size=30))
def test_email_signature_round_trip_and_tamper(body: bytes, secret: str) -> None:
    signature = email_signature(secret, body)
    assert verify_email_signature(secret, body, signature)
    assert not verify_email_signature(secret, body + b"x", signature)
    assert not verify_email_signature(secret + "x", body, signature)
    assert not verify_email_signature(secret, body, None)
    assert not verify_email_signature("", body, email_signature("", body))


# -------------------------------------------------------------------------------------------- opens


@given(st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1))
def test_message_tokens_round_trip(workspace_id: int, message_id: int) -> None:
    token = message_token(SECRET, workspace_id, message_id)
    assert read_message_token(SECRET, token) == MessageRef(workspace_id, message_id)
    assert read_message_token("other-secret", token) is None


@given(st.text(max_size=80))
def test_random_text_is_never_a_token(text: str) -> None:
    assert read_message_token(SECRET, text) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "0" + t,  # leading zero: a second spelling of the same id
        lambda t: t.replace(".", "", 1),
        lambda t: t + ".x",
        lambda t: "",
    ],
)
def test_tampered_tokens_fail(mangle: object) -> None:
    token = message_token(SECRET, 3, 1234)
    assert callable(mangle)
    assert read_message_token(SECRET, mangle(token)) is None


def test_pixel_url_and_gif() -> None:
    url = open_pixel_url("https://d.example/", SECRET, 3, 1234)
    assert url.startswith("https://d.example/o/")
    assert url.endswith(".gif")
    token = url.removeprefix("https://d.example/o/").removesuffix(".gif")
    assert read_message_token(SECRET, token) == MessageRef(3, 1234)
    assert PIXEL_GIF.startswith(b"GIF89a")
    assert PIXEL_GIF.endswith(b";")
    assert len(PIXEL_GIF) == 43
    assert PIXEL_GIF[6:10] == b"\x01\x00\x01\x00"  # 1×1


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("agent", "seconds_after_send", "machine"),
    [
        (CHROME, 3600, False),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15", 120, False),
        (CHROME, 2, True),  # prefetched right after sending
        (CHROME, None, False),  # send time unknown: only the agent decides
        ("Barracuda Sentinel (EE)", 3600, True),
        ("Mimecast-URL-Protect", 3600, True),
        ("Mozilla/5.0 (compatible; Proofpoint)", 3600, True),
        ("python-requests/2.31", 3600, True),
        ("curl/8.4.0", 3600, True),
        ("Go-http-client/1.1", 3600, True),
        ("Mozilla/5.0 (compatible; Googlebot/2.1)", 3600, True),
        ("", 3600, True),
        (None, 3600, True),
    ],
)
def test_machine_opens(agent: str | None, seconds_after_send: int | None, machine: bool) -> None:
    sent_at = None if seconds_after_send is None else NOW - timedelta(seconds=seconds_after_send)
    assert is_machine(agent, sent_at=sent_at, now=NOW) is machine
