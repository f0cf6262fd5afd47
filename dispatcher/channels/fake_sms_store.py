"""Configuration and memory of the local SMS provider stand-in (see ``fake_sms``).

The store is what tests and benchmarks interrogate to prove exactly-once delivery: every accepted message
is kept in arrival order with a sequence number, the idempotency token maps to its first message (a repeat
is counted as ``deduplicated``, never recorded twice), and per-recipient counts expose duplicates.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from dispatcher.errors import InputError

__all__ = ["FAULTS", "FakeSmsConfig", "FakeSmsStore", "Reply", "SmsRecord"]

Fault = Literal["429", "500", "503", "timeout_before", "timeout_after"]
#: Faults in the order their probability buckets are laid out on [0, 1).
FAULTS: Final[tuple[Fault, ...]] = ("429", "500", "503", "timeout_before", "timeout_after")


@dataclass(frozen=True, slots=True)
class FakeSmsConfig:
    """How the stand-in behaves. Rates are probabilities in [0, 1]; durations are seconds.

    Fault rates are drawn once per request from one seeded generator, so a run with a ``seed`` and one
    request at a time is reproducible. ``timeout_before`` sleeps ``timeout_sleep`` without recording the
    message; ``timeout_after`` records it, then sleeps: the client cannot know it went through.
    """

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "fake-sms-auth-token"  # noqa: S105 - a stand-in's well-known credential
    seed: int | None = None
    response_latency: float = 0.0
    delivery_rate: float = 1.0
    failure_status: Literal["undelivered", "failed"] = "undelivered"
    callback_latency: float = 0.0
    intermediate_callbacks: bool = True  # queued and sent before the final status
    callback_concurrency: int = 20
    inbound_url: str | None = None
    reply_rate: float = 0.0
    reply_texts: tuple[str, ...] = ("YES", "STOP")
    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_timeout_before: float = 0.0
    rate_timeout_after: float = 0.0
    timeout_sleep: float = 30.0

    def __post_init__(self) -> None:
        rates = {
            "delivery_rate": self.delivery_rate,
            "reply_rate": self.reply_rate,
            **{f"rate_{fault}": rate for fault, rate in zip(FAULTS, self.fault_rates, strict=True)},
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {rate}")
        if sum(self.fault_rates) > 1.0:
            raise InputError("the fault rates add up to more than 1")
        if self.reply_rate > 0 and not self.reply_texts:
            raise InputError("reply_rate needs at least one reply text")
        if min(self.response_latency, self.callback_latency, self.retry_after, self.timeout_sleep) < 0:
            raise InputError("latencies, retry_after and timeout_sleep must not be negative")
        if self.callback_concurrency < 1:
            raise InputError("callback_concurrency must be at least 1")

    @property
    def fault_rates(self) -> tuple[float, ...]:
        return (
            self.rate_429,
            self.rate_500,
            self.rate_503,
            self.rate_timeout_before,
            self.rate_timeout_after,
        )

    def choose_fault(self, draw: float) -> Fault | None:
        """The fault whose bucket holds ``draw`` (uniform on [0, 1)), or None for a normal answer."""
        edge = 0.0
        for fault, rate in zip(FAULTS, self.fault_rates, strict=True):
            edge += rate
            if draw < edge:
                return fault
        return None


@dataclass(slots=True)
class SmsRecord:
    """One accepted message; ``status`` moves on as the status callbacks go out."""

    seq: int
    sid: str
    to: str
    sender: str
    body: str
    segments: int
    idempotency_token: str | None
    status_callback: str | None
    received_at: float = field(default_factory=time.time)
    status: str = "queued"

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "sid": self.sid,
            "to": self.to,
            "from": self.sender,
            "body": self.body,
            "num_segments": self.segments,
            "idempotency_token": self.idempotency_token,
            "status_callback": self.status_callback,
            "status": self.status,
            "received_at": datetime.fromtimestamp(self.received_at, UTC).isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Reply:
    """An inbound message the stand-in posted to the inbound webhook, as if a recipient answered."""

    sid: str
    sender: str  # the recipient of the original message
    to: str
    body: str
    in_reply_to: str

    def as_dict(self) -> dict[str, str]:
        return {
            "sid": self.sid,
            "from": self.sender,
            "to": self.to,
            "body": self.body,
            "in_reply_to": self.in_reply_to,
        }


class FakeSmsStore:
    """In-memory ledger of the stand-in; single event loop, so no locking."""

    def __init__(self) -> None:
        self.records: list[SmsRecord] = []
        self.replies: list[Reply] = []
        self.counters: Counter[str] = Counter()
        self._by_token: dict[str, SmsRecord] = {}
        self._by_sid: dict[str, SmsRecord] = {}
        self._per_recipient: Counter[str] = Counter()
        # kept as messages arrive: stats are polled while a run sends (bench/dispatch.py: 20 times a second)
        self._recipients_with_duplicates = 0
        self._max_per_recipient = 0
        self._sid_serial = 0

    def next_sid(self) -> str:
        self._sid_serial += 1
        return f"SM{self._sid_serial:032x}"

    def get(self, sid: str) -> SmsRecord | None:
        return self._by_sid.get(sid)

    def find(self, token: str | None) -> SmsRecord | None:
        return self._by_token.get(token) if token else None

    def add(
        self, *, to: str, sender: str, body: str, segments: int, token: str | None, callback: str | None
    ) -> SmsRecord:
        record = SmsRecord(
            len(self.records) + 1, self.next_sid(), to, sender, body, segments, token, callback
        )
        self.records.append(record)
        self._by_sid[record.sid] = record
        if token:
            self._by_token[token] = record
        seen = self._per_recipient[to] = self._per_recipient[to] + 1
        if seen == 2:
            self._recipients_with_duplicates += 1
        self._max_per_recipient = max(self._max_per_recipient, seen)
        self.counters["accepted"] += 1
        return record

    def since(self, seq: int, limit: int, to: str | None = None) -> list[SmsRecord]:
        start = max(seq, 0)  # seq n is at index n - 1, so "after seq" starts at index seq
        pool = self.records[start:] if to is None else (r for r in self.records[start:] if r.to == to)
        found: list[SmsRecord] = []
        for record in pool:
            if len(found) >= limit:
                break
            found.append(record)
        return found

    def stats(self) -> dict[str, int]:
        return {
            **self.counters,
            "messages": len(self.records),
            "unique_tokens": len(self._by_token),
            "unique_recipients": len(self._per_recipient),
            "recipients_with_duplicates": self._recipients_with_duplicates,
            "max_per_recipient": self._max_per_recipient,
            "replies": len(self.replies),
        }

    def reset(self) -> None:
        """Forget everything but the sid serial, so a sid is never handed out twice by one process."""
        self.records.clear()
        self.replies.clear()
        self.counters.clear()
        self._by_token.clear()
        self._by_sid.clear()
        self._per_recipient.clear()
        self._recipients_with_duplicates = self._max_per_recipient = 0
