"""E-mail outcomes coming back: a provider's event webhook (JSON) and raw RFC 3464 bounce messages.

Both are signed with the provider's ``webhook_secret``: header ``X-Dispatcher-Signature: sha256=<hex>``,
an HMAC-SHA256 of the raw body. A report names its message by the original Message-ID
(``<dsp-{campaign}-{message}@…>``). Events are keyed by the fact, not by the delivery (``bounce:{message}``),
so the same bounce told by the webhook and by a DSN, or told 50 times, counts once.

- ``delivered``: the ledger moves sent → delivered.
- ``bounce``: sent → failed; a hard bounce (5.x.x, or no status at all) also suppresses the address.
- ``complaint``: the address is suppressed; the message stays delivered.
- ``deferred`` / DSN ``delayed``: the provider is still trying; nothing changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.dsn import bounce_class, parse_dsn
from dispatcher.core.inbound import parse_message_key, verify_email_signature
from dispatcher.errors import InputError, MalformedBodyError, PermissionDeniedError
from dispatcher.ops.inbound import provider_for_hook
from dispatcher.storage import events as store
from dispatcher.storage import suppressions
from dispatcher.storage.campaigns import Message
from dispatcher.storage.content import Provider

__all__ = ["EmailReport", "EmailTally", "email_dsn", "email_events"]

TYPES: Final = ("bounce", "complaint", "delivered", "deferred")
_MAX_EVENTS: Final = 1000


@dataclass(frozen=True, slots=True)
class EmailReport:
    type: str  # bounce | complaint | delivered | deferred
    recipient: str
    message_key: tuple[int, int] | None
    status: str = ""
    diagnostic: str = ""
    event_id: str = ""


@dataclass(slots=True)
class EmailTally:
    received: int = 0
    applied: int = 0  # reports that were new facts
    unknown: int = 0  # reports about no message of ours
    suppressed: list[str] = field(default_factory=list)


def _check(provider: Provider, body: bytes, signature: str | None) -> None:
    secret = str(provider.config.get("webhook_secret") or "")
    if not verify_email_signature(secret, body, signature):
        raise PermissionDeniedError("missing or invalid X-Dispatcher-Signature")


def _reports(body: bytes) -> list[EmailReport]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBodyError("body is not valid JSON") from None
    items = data.get("events") if isinstance(data, dict) else data
    if not isinstance(items, list) or len(items) > _MAX_EVENTS:
        raise InputError(f"body must be a list of at most {_MAX_EVENTS} events (or {{'events': [...]}})")
    reports, problems = [], []
    for index, item in enumerate(items):
        report = _report(item)
        if report is None:
            problems.append({"field": str(index), "message": f"needs type in {TYPES}, recipient, message_id"})
        else:
            reports.append(report)
    if problems:
        raise InputError("invalid events", details=problems)
    return reports


def _report(item: Any) -> EmailReport | None:
    if not isinstance(item, dict):
        return None
    kind, recipient = item.get("type"), item.get("recipient")
    if kind not in TYPES or not isinstance(recipient, str) or not recipient.strip():
        return None
    return EmailReport(
        type=kind,
        recipient=recipient.strip().lower()[:320],
        message_key=parse_message_key(str(item.get("message_id") or "")),
        status=str(item.get("status") or "")[:16],
        diagnostic=str(item.get("diagnostic") or "")[:500],
        event_id=str(item.get("event_id") or "")[:100],
    )


async def email_events(
    session: AsyncSession, provider_id: int, body: bytes, signature: str | None, *, now: datetime
) -> EmailTally:
    provider = await provider_for_hook(session, provider_id, "email")
    _check(provider, body, signature)
    return await apply_reports(session, provider, _reports(body), now=now)


async def email_dsn(
    session: AsyncSession, provider_id: int, raw: bytes, signature: str | None, *, now: datetime
) -> EmailTally:
    provider = await provider_for_hook(session, provider_id, "email")
    _check(provider, raw, signature)
    reports = [
        EmailReport(
            type={"failed": "bounce", "delayed": "deferred"}.get(dsn.action, "delivered"),
            recipient=dsn.recipient[:320],
            message_key=dsn.message_key,
            status=dsn.status,
            diagnostic=dsn.diagnostic,
        )
        for dsn in parse_dsn(raw)
    ]
    return await apply_reports(session, provider, reports, now=now)


async def apply_reports(
    session: AsyncSession, provider: Provider, reports: Sequence[EmailReport], *, now: datetime
) -> EmailTally:
    tally = EmailTally(received=len(reports))
    for report in reports:
        await _apply(session, provider, report, tally, now=now)
    return tally


async def _message(session: AsyncSession, workspace_id: int, report: EmailReport) -> store.MessageRow | None:
    if report.message_key is None:
        return None
    found = await store.message_by_key(session, workspace_id, *report.message_key)
    # a report about another address than the one we sent to is not about this message
    return found if found is not None and found.address.lower() == report.recipient else None


async def _apply(
    session: AsyncSession, provider: Provider, report: EmailReport, tally: EmailTally, *, now: datetime
) -> None:
    if report.type == "deferred":
        return
    message = await _message(session, provider.workspace_id, report)
    if message is None:
        tally.unknown += 1
    if report.type == "delivered":
        if message is not None and await _advance(session, message, "delivered", None, now):
            tally.applied += 1
        return
    hard = report.type == "bounce" and bounce_class(report.status) != "soft"
    subject = (
        f"{message.id}" if message is not None else f"{provider.id}:{report.recipient}:{report.event_id}"
    )
    new = await store.record_event(
        session,
        workspace_id=provider.workspace_id,
        kind=report.type,
        dedupe_key=f"{report.type}:{subject}",
        occurred_at=now,
        message=message,
        payload={"status": report.status, "diagnostic": report.diagnostic, "hard": hard, "channel": "email"},
    )
    tally.applied += int(new)
    if report.type == "bounce" and message is not None:
        await _advance(session, message, "failed", report.status or "bounce", now)
    if hard or report.type == "complaint":
        reason = "complaint" if report.type == "complaint" else "hard_bounce"
        if await suppressions.suppress_address(
            session,
            workspace_id=provider.workspace_id,
            channel="email",
            address=report.recipient,
            reason=reason,
            source=f"{reason} via provider {provider.id} {report.status}".strip(),
            now=now,
        ):
            tally.suppressed.append(report.recipient)


async def _advance(
    session: AsyncSession, message: store.MessageRow, status: str, error_code: str | None, now: datetime
) -> bool:
    moved = await store.advance_message(
        session, Message.id == message.id, status=status, error_code=error_code, occurred_at=now
    )
    if moved is None or status != "delivered":
        return moved is not None
    return await store.record_event(
        session,
        workspace_id=moved.workspace_id,
        kind="delivered",
        dedupe_key=f"status:{moved.id}:delivered",
        occurred_at=now,
        message=moved,
    )
