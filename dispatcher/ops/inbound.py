"""SMS coming back from a Twilio-style provider: delivery receipts and replies (STOP, START, HELP, answers).

Both webhooks are public: the provider id in the URL names the account, whose ``auth_token`` must have
signed the request (``X-Twilio-Signature`` over the URL we are reachable at plus the form). Each call is
one transaction whose first write is the event's deduplication guard, so a callback delivered 1–50 times,
in any order or at the same moment, does its work once: one suppression, one confirmation text, one count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.channels.twilio_http import reason_for_error_code, verify_signature
from dispatcher.core.inbound import ReplyKind, classify_reply, is_final, receipt_status
from dispatcher.errors import NotFoundError, PermissionDeniedError
from dispatcher.pipeline.replies import act_on_reply
from dispatcher.storage import events as store
from dispatcher.storage import suppressions
from dispatcher.storage.content import Provider

__all__ = ["InboundAnswer", "ReceiptResult", "provider_for_hook", "sms_inbound", "sms_status"]

# error reasons that say the number itself is bad or has refused us: never send to it again
_SUPPRESSING_REASONS: Final = {
    "invalid_number": "hard_bounce",
    "not_mobile": "hard_bounce",
    "unsubscribed": "stop",
}
_MAX_TEXT: Final = 1600


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    status: str | None  # our status word; None for a word that says nothing about delivery
    message_id: int | None  # None: no message of ours has that provider id
    applied: bool  # this receipt moved the ledger (and was counted)


@dataclass(frozen=True, slots=True)
class InboundAnswer:
    kind: ReplyKind
    first: bool  # False: a repeat delivery of a message already handled
    reply_text: str | None  # the one confirmation / help text to send back, if any


async def provider_for_hook(session: AsyncSession, provider_id: int, channel: str) -> Provider:
    provider = await store.provider_by_id(session, provider_id)
    if provider is None or provider.channel != channel:
        raise NotFoundError(f"provider {provider_id} not found")
    return provider


def _check_twilio(
    provider: Provider, url: str, form: Sequence[tuple[str, str]], signature: str | None
) -> None:
    token = str(provider.config.get("auth_token") or "")
    if not verify_signature(token, url, form, signature):
        raise PermissionDeniedError("missing or invalid X-Twilio-Signature")


def _field(form: Sequence[tuple[str, str]], *names: str) -> str:
    for name in names:
        for key, value in form:
            if key == name and value:
                return value
    return ""


async def sms_status(
    session: AsyncSession,
    provider_id: int,
    form: Sequence[tuple[str, str]],
    signature: str | None,
    url: str,
    *,
    now: datetime,
) -> ReceiptResult:
    """A status callback. Intermediate statuses (queued, sent) are accepted and change nothing: the ledger
    already says sent; only a final status moves it, once."""
    provider = await provider_for_hook(session, provider_id, "sms")
    _check_twilio(provider, url, form, signature)
    sid = _field(form, "MessageSid", "SmsSid")
    status = receipt_status(_field(form, "MessageStatus", "SmsStatus"))
    if not sid or status is None or not is_final(status):
        return ReceiptResult(status, None, False)
    error_code = _field(form, "ErrorCode") or None
    reason = _SUPPRESSING_REASONS.get(reason_for_error_code(error_code)) if error_code else None
    # a receipt that beats the worker's write of the message id is held and applied by the sweep, reason too
    message, applied = await store.apply_receipt(
        session,
        provider_id=provider_id,
        provider_message_id=sid[:100],
        status=status,
        error_code=error_code,
        occurred_at=now,
        suppress_reason=reason,
    )
    if message is not None and applied and reason is not None:
        await suppressions.suppress_address(
            session,
            workspace_id=message.workspace_id,
            channel="sms",
            address=message.address,
            reason=reason,
            source=f"provider {provider_id} error {(error_code or '')[:20]}",
            now=now,
        )
    return ReceiptResult(status, None if message is None else message.id, applied)


async def sms_inbound(
    session: AsyncSession,
    provider_id: int,
    form: Sequence[tuple[str, str]],
    signature: str | None,
    url: str,
    *,
    now: datetime,
) -> InboundAnswer:
    """An incoming SMS: recorded once (attributed to the last message sent to that number), then acted on."""
    provider = await provider_for_hook(session, provider_id, "sms")
    _check_twilio(provider, url, form, signature)
    sender, body = _field(form, "From"), _field(form, "Body")
    sid = _field(form, "MessageSid", "SmsMessageSid", "SmsSid")
    kind = classify_reply(body)
    if not sender or not sid:
        return InboundAnswer(kind, False, None)
    workspace_id = provider.workspace_id
    message = await store.latest_message_to(session, workspace_id, "sms", sender)
    first = await store.record_event(
        session,
        workspace_id=workspace_id,
        kind=kind,
        dedupe_key=f"inbound:{provider_id}:{sid}",
        occurred_at=now,
        message=message,
        payload={"from": sender, "to": _field(form, "To"), "text": body[:_MAX_TEXT], "sid": sid[:64]},
    )
    if not first:
        return InboundAnswer(kind, False, None)
    return InboundAnswer(kind, True, await act_on_reply(session, provider, kind, sender, body, now=now))
