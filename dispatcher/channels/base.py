"""What the engine sees of an SMS provider: one small Protocol called with a batch, and plain outcomes.

Provider failures are classified once, here at the channel edge, into three statuses:

``sent``
    the provider accepted the message; ``provider_message_id`` ties later status callbacks to it.
``transient``
    try again later (throttled, 5xx, timeout, connection refused, our own credentials rejected);
    ``retry_after`` carries the provider's ``Retry-After`` in seconds when it gave one.
``permanent``
    this message will never go (invalid number, unsubscribed, landline...): record it once;
    ``reason`` says whether the contact should be suppressed (see :data:`SUPPRESSING_REASONS`).

A transient outcome with ``possible_duplicate=True`` is the ambiguous case: the request left this process
but no answer came back, so the provider may have accepted it. Resending is safe only when the channel
``supports_idempotency`` (the provider deduplicates on ``idempotency_key``); otherwise the engine decides
by policy and counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from dispatcher.errors import PermanentProviderError, ProviderError, TransientProviderError

__all__ = [
    "SUPPRESSING_REASONS",
    "EmailChannel",
    "OutboundEmail",
    "OutboundSms",
    "SendOutcome",
    "SendStatus",
    "SmsChannel",
]

SendStatus = Literal["sent", "transient", "permanent"]

#: Permanent reasons that say something about the recipient rather than the message: suppress the contact.
SUPPRESSING_REASONS: Final = frozenset(
    {"invalid_number", "unsubscribed", "not_mobile", "hard_bounce", "invalid_address", "complaint"}
)


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One rendered message for one recipient; ``message_id`` is the engine's ledger id, echoed back."""

    message_id: int
    to: str  # E.164
    sender: str
    body: str
    idempotency_key: str
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundEmail:
    """One e-mail, already serialised (``data`` is the whole RFC 5322 message, CRLF line endings).

    The engine builds the MIME once per campaign and fills it per recipient (core/mime); the channel only
    signs (DKIM, when configured) and delivers. ``mail_from`` is the envelope sender (bounces go there).
    """

    message_id: int
    to: str
    mail_from: str
    data: bytes
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What became of one :class:`OutboundSms`.

    ``reason`` is a machine word (``invalid_number``, ``unsubscribed``, ``not_mobile``, ``unreachable``,
    ``rejected``, ``throttled``, ``server_error``, ``timeout``, ``connection``, ``provider_config``,
    ``bad_response``); ``error_code`` is the provider's own code when it sent one (``"21211"``) and
    ``error_detail`` its human message.
    """

    message_id: int
    status: SendStatus
    provider_message_id: str | None = None
    error_code: str | None = None
    error_detail: str | None = None
    retry_after: float | None = None
    segments: int | None = None
    possible_duplicate: bool = False
    reason: str | None = None

    @property
    def suppresses(self) -> bool:
        return self.status == "permanent" and self.reason in SUPPRESSING_REASONS

    def as_error(self) -> ProviderError | None:
        """The outcome as a member of the error tree, for callers that prefer raising; None when sent."""
        text = f"{self.reason or 'failed'}: {self.error_detail or self.error_code or 'no detail'}"
        if self.status == "transient":
            return TransientProviderError(text, retry_after=self.retry_after)
        if self.status == "permanent":
            return PermanentProviderError(text, reason=self.reason or "rejected")
        return None


class SmsChannel(Protocol):
    """An SMS provider. Implementations get their HTTP session (or connection) injected."""

    @property
    def name(self) -> str:
        """Short provider name for logs and reports (``twilio-http``)."""
        ...

    @property
    def supports_idempotency(self) -> bool:
        """True when the provider deduplicates on ``idempotency_key``, so an ambiguous send may be resent."""
        ...

    async def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendOutcome]:
        """Send every message; return exactly one outcome per message, in the same order.

        Never raises for a failure of one message or of the provider: that is an outcome. Cancellation
        propagates (messages in flight at that moment are in the ambiguous state).
        """
        ...

    async def close(self) -> None:
        """Release what the channel owns (not the injected session, which its owner closes)."""
        ...


class EmailChannel(Protocol):
    """An e-mail provider (SMTP relay). Same contract as :class:`SmsChannel`, for serialised e-mails."""

    @property
    def name(self) -> str: ...

    @property
    def supports_idempotency(self) -> bool:
        """SMTP has no idempotency key: an ambiguous send is resent only under the campaign's policy."""
        ...

    async def send_batch(self, messages: Sequence[OutboundEmail]) -> list[SendOutcome]:
        """One outcome per message, same order; never raises for a delivery failure."""
        ...

    async def close(self) -> None: ...
