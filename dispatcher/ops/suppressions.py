"""Suppressions: per channel, with reason and time; checked at import and again at send time.

Nothing but an operator's ``DELETE`` removes one: a re-import never does (the import drops suppressed rows
and leaves the suppression alone).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.cleaning import EmailResult, PhoneResult, clean_email, clean_phone
from dispatcher.errors import InputError, NotFoundError
from dispatcher.storage import suppressions as store
from dispatcher.storage.contacts import Suppression


def normalize_address(channel: str, address: str, default_region: str | None) -> str:
    """The stored form of an address (E.164 or the clean e-mail), as imports and sends compare it.

    On channel ``all`` an address with an ``@`` is an e-mail, anything else a phone number.
    """
    is_email = channel == "email" or (channel == "all" and "@" in address)
    if is_email:
        email = clean_email(address)
        if isinstance(email, EmailResult):
            return email.normalized
        problem = email.detail or "not a valid e-mail address"
    else:
        phone = clean_phone(address, default_region)
        if isinstance(phone, PhoneResult):
            return phone.e164
        problem = phone.detail or "not a valid phone number"
        if not address.strip().startswith("+") and default_region is None:
            problem += "; write it with +country code or send default_region"
    raise InputError(f"invalid address: {problem}", details=[{"field": "address", "message": problem}])


async def suppress(
    session: AsyncSession,
    workspace_id: int,
    *,
    channel: str,
    address: str,
    reason: str,
    source: str,
    default_region: str | None,
    now: datetime,
) -> tuple[Suppression, bool]:
    """Suppress an address; an existing suppression of it is returned unchanged (with ``False``)."""
    return await store.add_suppression(
        session,
        workspace_id=workspace_id,
        channel=channel,
        address=normalize_address(channel, address, default_region),
        reason=reason,
        source=source,
        now=now,
    )


def _lookup_address(channel: str | None, address: str) -> str:
    """An address filter as stored when it cleans, else as given (it then simply matches nothing)."""
    try:
        return normalize_address(channel or "all", address, None)
    except InputError:
        return address.strip()


async def page_suppressions(
    session: AsyncSession,
    workspace_id: int,
    *,
    channel: str | None,
    reason: str | None,
    address: str | None,
    after: int,
    limit: int,
) -> list[Suppression]:
    return await store.page_suppressions(
        session,
        workspace_id,
        channel=channel,
        reason=reason,
        address=_lookup_address(channel, address) if address else None,
        after=after,
        limit=limit,
    )


async def get_suppression(session: AsyncSession, workspace_id: int, suppression_id: int) -> Suppression:
    found = await store.get_suppression(session, workspace_id, suppression_id)
    if found is None:
        raise NotFoundError(f"suppression {suppression_id} not found")
    return found


async def delete_suppression(session: AsyncSession, workspace_id: int, suppression_id: int) -> None:
    if not await store.delete_suppression(session, workspace_id, suppression_id):
        raise NotFoundError(f"suppression {suppression_id} not found")
