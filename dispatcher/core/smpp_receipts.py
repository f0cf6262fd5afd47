"""SMPP delivery receipts: the de-facto text format of SMPP 3.4 appendix B, parsed leniently.

``id:XXX sub:001 dlvrd:001 submit date:2311231200 done date:2311231201 stat:DELIVRD err:000 text:Hello``

SMSCs differ in case (``Text:``), spacing (``id: 12``, double spaces), date length (10 or 12 digits) and
in whether they send the id in the text, in the ``receipted_message_id`` TLV, or both; the TLVs win when
present because the text is free-form. Dates carry no time zone: they are read as UTC. A receipt that
cannot be read at all gives None (the caller still acknowledges the PDU, or the SMSC resends forever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

__all__ = [
    "MESSAGE_STATES",
    "STATUS_WORDS",
    "Receipt",
    "ReceiptStatus",
    "format_receipt",
    "parse_receipt",
]

ReceiptStatus = Literal["delivered", "undelivered", "failed", "expired", "rejected", "unknown"]

#: ``stat:`` words (SMPP 3.4 appendix B, plus common variants) to our statuses.
STATUS_WORDS: Final[dict[str, ReceiptStatus]] = {
    "DELIVRD": "delivered",
    "DELIVERED": "delivered",
    "UNDELIV": "undelivered",
    "UNDELIVERABLE": "undelivered",
    "EXPIRED": "expired",
    "DELETED": "failed",
    "FAILED": "failed",
    "REJECTD": "rejected",
    "REJECTED": "rejected",
    "UNKNOWN": "unknown",
    "ACCEPTD": "unknown",
    "ENROUTE": "unknown",
}

#: The ``message_state`` TLV (SMPP 3.4 §5.2.28) to our statuses.
MESSAGE_STATES: Final[dict[int, ReceiptStatus]] = {
    1: "unknown",  # ENROUTE
    2: "delivered",
    3: "expired",
    4: "failed",  # DELETED
    5: "undelivered",
    6: "unknown",  # ACCEPTED
    7: "unknown",
    8: "rejected",
}

_KEY_RE: Final = re.compile(
    r"(?:^|(?<=\s))(id|sub|dlvrd|submit[\s_]*date|done[\s_]*date|stat|err|text)\s*:\s*", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One delivery receipt, tied to a sent message by ``provider_message_id`` (the submit_sm_resp id)."""

    provider_message_id: str
    status: ReceiptStatus
    error_code: str | None = None
    done_at: datetime | None = None
    submitted_at: datetime | None = None
    stat: str | None = None  # the SMSC's own word, for the record
    text: str | None = None


def _fields(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    matches = list(_KEY_RE.finditer(text))
    for index, match in enumerate(matches):
        key = re.sub(r"[\s_]+", " ", match.group(1).lower())
        if key == "text":  # free text is last and may contain anything, colons included
            found[key] = text[match.end() :].strip()
            break
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        found.setdefault(key, text[match.end() : end].strip())
    return found


def _first_word(value: str | None) -> str | None:
    words = (value or "").split()
    return words[0] if words else None


def _date(value: str | None) -> datetime | None:
    """YYMMDDhhmm[ss] in the 2000s: strptime's %y would put 69-99 in the last century."""
    digits = (value or "").strip()
    if len(digits) not in (10, 12) or not digits.isdigit() or not digits.isascii():
        return None
    numbers = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    year, month, day, hour, minute = numbers[:5]
    second = numbers[5] if len(numbers) == 6 else 0
    try:
        return datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def parse_receipt(
    text: str, *, receipted_message_id: str | None = None, message_state: int | None = None
) -> Receipt | None:
    """Read a receipt from its text and optional TLVs; None when it names no message."""
    fields = _fields(text)
    message_id = _first_word(receipted_message_id) or _first_word(fields.get("id"))
    if not message_id:
        return None
    stat_word = _first_word(fields.get("stat"))
    stat_word = stat_word.upper() if stat_word else None
    status: ReceiptStatus
    if message_state is not None and message_state in MESSAGE_STATES:
        status = MESSAGE_STATES[message_state]
    else:
        status = STATUS_WORDS.get(stat_word or "", "unknown")
    return Receipt(
        provider_message_id=message_id,
        status=status,
        error_code=_first_word(fields.get("err")),
        done_at=_date(fields.get("done date")),
        submitted_at=_date(fields.get("submit date")),
        stat=stat_word,
        text=fields.get("text"),
    )


def format_receipt(
    message_id: str,
    stat: str,
    *,
    error_code: str = "000",
    submitted_at: datetime | None = None,
    done_at: datetime | None = None,
    text: str = "",
    parts: int = 1,
) -> str:
    """The receipt text an SMSC sends (used by the stand-in and by tests); dates in UTC, to the minute."""
    submit = submitted_at.astimezone(UTC).strftime("%y%m%d%H%M") if submitted_at else ""
    done = done_at.astimezone(UTC).strftime("%y%m%d%H%M") if done_at else ""
    delivered = parts if stat.upper() == "DELIVRD" else 0
    return (
        f"id:{message_id} sub:{parts:03d} dlvrd:{delivered:03d} submit date:{submit} done date:{done}"
        f" stat:{stat} err:{error_code} text:{text[:20]}"
    )
