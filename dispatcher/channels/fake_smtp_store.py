"""Configuration and memory of the local SMTP sink (see ``fake_smtp``).

The store is what tests and benchmarks interrogate to prove exactly-once delivery: every accepted message
is kept in arrival order with a sequence number, per-recipient and per-Message-ID counts expose duplicates,
and counters say which faults were injected. Faults are drawn from one seeded generator.
"""

from __future__ import annotations

import mailbox
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from dispatcher.errors import InputError

__all__ = ["FakeSmtpConfig", "FakeSmtpStore", "RcptFault", "ReceivedMail"]

RcptFault = Literal["4xx", "5xx"]
_MESSAGE_ID: Final = re.compile(rb"(?:^|\r?\n)message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FakeSmtpConfig:
    """How the sink behaves. Rates are probabilities in [0, 1], drawn per RCPT or per DATA.

    ``bounce_prefix``: recipients whose local part starts with it always get ``550 5.1.1`` (a hard bounce).
    ``rate_4xx`` / ``rate_5xx``: a fraction of the other RCPTs get ``rcpt_4xx`` / ``rcpt_5xx``.
    ``rate_reject_data``: a fraction of messages are refused after DATA with ``554 5.7.1``.
    ``rate_drop_after_data``: a fraction of messages are stored, then the connection is cut before the
    reply: the client cannot know they arrived (the ambiguous case the engine must count).
    ``username``/``password``: AUTH is required when set. ``maildir``: also write every message there.
    """

    seed: int | None = None
    bounce_prefix: str | None = "bounce"
    rate_4xx: float = 0.0
    rcpt_4xx: str = "451 4.7.1 Try again later"
    rate_5xx: float = 0.0
    rcpt_5xx: str = "550 5.1.1 No such user here"
    rate_reject_data: float = 0.0
    rate_drop_after_data: float = 0.0
    latency: float = 0.0  # seconds before answering DATA
    username: str | None = None
    password: str | None = None
    maildir: str | None = None
    keep_data: bool = True  # False keeps envelopes and counts only (long benchmarks)

    def __post_init__(self) -> None:
        for name in ("rate_4xx", "rate_5xx", "rate_reject_data", "rate_drop_after_data"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {rate}")
        if self.rate_4xx + self.rate_5xx > 1.0:
            raise InputError("rate_4xx and rate_5xx add up to more than 1")
        if self.rate_reject_data + self.rate_drop_after_data > 1.0:
            raise InputError("rate_reject_data and rate_drop_after_data add up to more than 1")
        for name, prefix in (("rcpt_4xx", "4"), ("rcpt_5xx", "5")):
            reply = getattr(self, name)
            if not re.fullmatch(rf"{prefix}\d\d [ -~]+", reply):
                raise InputError(f"{name} must be an SMTP reply starting with {prefix}xx, got {reply!r}")
        if (self.username is None) != (self.password is None):
            raise InputError("username and password go together")
        if self.latency < 0:
            raise InputError("latency must not be negative")

    def rcpt_fault(self, draw: float) -> RcptFault | None:
        if draw < self.rate_4xx:
            return "4xx"
        if draw < self.rate_4xx + self.rate_5xx:
            return "5xx"
        return None


@dataclass(slots=True)
class ReceivedMail:
    seq: int
    queue_id: str
    mail_from: str
    rcpt_tos: list[str]
    message_id: str | None
    size: int
    data: bytes | None
    received_at: float = field(default_factory=time.time)

    def as_dict(self, *, with_data: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {
            "seq": self.seq,
            "queue_id": self.queue_id,
            "mail_from": self.mail_from,
            "rcpt_tos": self.rcpt_tos,
            "message_id": self.message_id,
            "size": self.size,
            "received_at": datetime.fromtimestamp(self.received_at, UTC).isoformat(),
        }
        if with_data and self.data is not None:
            found["data"] = self.data.decode("utf-8", "replace")
        return found


class FakeSmtpStore:
    """In-memory record of the sink; one event loop, so no locking."""

    def __init__(self, *, keep_data: bool = True, maildir: str | None = None) -> None:
        self.keep_data = keep_data
        self.messages: list[ReceivedMail] = []
        self.counters: Counter[str] = Counter()
        self.per_recipient: Counter[str] = Counter()
        self.per_message_id: Counter[str] = Counter()
        self._maildir = mailbox.Maildir(Path(maildir), create=True) if maildir else None
        self._serial = 0

    def add(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> ReceivedMail:
        self._serial += 1
        head = data[: data.find(b"\r\n\r\n") if b"\r\n\r\n" in data else len(data)]
        found = _MESSAGE_ID.search(head)
        message_id = found.group(1).decode("ascii", "replace") if found else None
        record = ReceivedMail(
            seq=len(self.messages) + 1,
            queue_id=f"FS{self._serial:010X}",
            mail_from=mail_from,
            rcpt_tos=list(rcpt_tos),
            message_id=message_id,
            size=len(data),
            data=data if self.keep_data else None,
        )
        self.messages.append(record)
        self.per_recipient.update(address.lower() for address in rcpt_tos)
        if message_id is not None:
            self.per_message_id[message_id] += 1
        self.counters["accepted"] += 1
        if self._maildir is not None:
            self._maildir.add(data)
        return record

    def since(self, seq: int, limit: int, to: str | None = None) -> list[ReceivedMail]:
        pool = self.messages[max(seq, 0) :]
        if to is not None:
            wanted = to.lower()
            pool = [m for m in pool if wanted in (r.lower() for r in m.rcpt_tos)]
        return pool[:limit]

    def stats(self) -> dict[str, int]:
        counts = self.per_recipient.values()
        return {
            **self.counters,
            "messages": len(self.messages),
            "unique_recipients": len(self.per_recipient),
            "recipients_with_duplicates": sum(1 for n in counts if n > 1),
            "max_per_recipient": max(counts, default=0),
            "duplicate_message_ids": sum(1 for n in self.per_message_id.values() if n > 1),
        }

    def reset(self) -> None:
        """Forget everything but the queue-id serial, so a queue id is never handed out twice."""
        self.messages.clear()
        self.counters.clear()
        self.per_recipient.clear()
        self.per_message_id.clear()
