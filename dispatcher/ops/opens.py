"""Opens (the tracking pixel) and conversions (a shop telling us a tracked recipient bought).

An open counts once per message for people and once for machines (scanner prefetches, fetch libraries):
both are kept, the machine one flagged, so reports can show them apart. A conversion counts once per
``external_id`` (the shop's order number): a retried report answers with the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.opens import is_machine, read_message_token
from dispatcher.errors import InputError, NotFoundError
from dispatcher.storage import events as store
from dispatcher.storage.campaigns import Event

__all__ = ["Conversion", "record_conversion", "record_open"]


@dataclass(frozen=True, slots=True)
class Conversion:
    event: Event
    created: bool


async def record_open(
    session: AsyncSession, secret: str, token: str, user_agent: str | None, *, now: datetime
) -> bool:
    """True when this fetch was the first of its kind (person or machine) for the message."""
    ref = read_message_token(secret, token)
    if ref is None:
        return False
    message = await store.message_in_workspace(session, ref.workspace_id, ref.message_id)
    if message is None:
        return False
    machine = is_machine(user_agent, sent_at=message.sent_at, now=now)
    return await store.record_event(
        session,
        workspace_id=message.workspace_id,
        kind="open",
        dedupe_key=f"open:{message.id}:{'machine' if machine else 'person'}",
        occurred_at=now,
        message=message,
        machine=machine,
        payload={"user_agent": (user_agent or "")[:200]},
    )


async def record_conversion(
    session: AsyncSession,
    workspace_id: int,
    *,
    secret: str,
    token: str | None,
    contact_id: int | None,
    campaign_id: int | None,
    value: Decimal | None,
    currency: str | None,
    external_id: str,
    now: datetime,
) -> Conversion:
    key = f"conversion:{external_id}"
    existing = await store.event_by_key(session, workspace_id, key)
    if existing is not None:
        return Conversion(existing, False)
    message = await _attributed(session, workspace_id, secret, token, contact_id, campaign_id)
    new = await store.record_event(
        session,
        workspace_id=workspace_id,
        kind="conversion",
        dedupe_key=key,
        occurred_at=now,
        message=message,
        value=value,
        payload={"currency": currency, "external_id": external_id},
    )
    row = await store.event_by_key(session, workspace_id, key)
    assert row is not None  # written just now, or by a concurrent request with the same external id
    return Conversion(row, new)


async def _attributed(
    session: AsyncSession,
    workspace_id: int,
    secret: str,
    token: str | None,
    contact_id: int | None,
    campaign_id: int | None,
) -> store.MessageRow:
    if token is not None:
        ref = read_message_token(secret, token)
        found = None
        if ref is not None and ref.workspace_id == workspace_id:
            found = await store.message_in_workspace(session, workspace_id, ref.message_id)
        if found is None:
            raise NotFoundError("tracking token not found")
        return found
    if contact_id is None or campaign_id is None:
        raise InputError("give a tracking token, or both contact_id and campaign_id")
    found = await store.message_for_contact(session, workspace_id, campaign_id, contact_id)
    if found is None:
        raise NotFoundError(f"no message of campaign {campaign_id} to contact {contact_id}")
    return found
