"""Contact queries: browse a list, count and sample an audience, erase one person. Always by workspace.

Erased contacts keep their row (the send ledger points at it) but are invisible to every query here.
"""

from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from dispatcher.storage.contacts import Contact, ContactList

_PHONE_PREFIX = re.compile(r"\+?[0-9]+")
_PHONE_NOISE = str.maketrans("", "", " -.()")


def in_list(workspace_id: int, list_id: int) -> ColumnElement[bool]:
    """The live (not erased) contacts of one list of one workspace."""
    return sa.and_(
        Contact.workspace_id == workspace_id, Contact.list_id == list_id, Contact.erased_at.is_(None)
    )


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_condition(q: str) -> ColumnElement[bool]:
    """Prefix match on phone (with or without the ``+``), e-mail and names; case-insensitive for text."""
    lowered = _like_prefix(q.lower())
    options = [
        sa.func.lower(column).like(lowered, escape="\\")
        for column in (Contact.email, Contact.first_name, Contact.last_name)
    ]
    digits = q.translate(_PHONE_NOISE)
    if _PHONE_PREFIX.fullmatch(digits):
        e164 = digits if digits.startswith("+") else "+" + digits
        options.append(Contact.phone.like(_like_prefix(e164), escape="\\"))
    return sa.or_(*options)


async def page_contacts(
    session: AsyncSession,
    workspace_id: int,
    list_id: int,
    *,
    where: ColumnElement[bool],
    after: int,
    limit: int,
) -> list[Contact]:
    rows = await session.scalars(
        sa.select(Contact)
        .where(in_list(workspace_id, list_id), Contact.id > after, where)
        .order_by(Contact.id)
        .limit(limit)
    )
    return list(rows)


async def count_and_sample(
    session: AsyncSession, workspace_id: int, list_id: int, *, where: ColumnElement[bool], sample: int
) -> tuple[int, list[int]]:
    scope = sa.and_(in_list(workspace_id, list_id), where)
    total = await session.scalar(sa.select(sa.func.count()).select_from(Contact).where(scope))
    ids = await session.scalars(sa.select(Contact.id).where(scope).order_by(Contact.id).limit(sample))
    return int(total or 0), list(ids)


async def get_contact(session: AsyncSession, workspace_id: int, contact_id: int) -> Contact | None:
    return await session.scalar(
        sa.select(Contact).where(
            Contact.workspace_id == workspace_id, Contact.id == contact_id, Contact.erased_at.is_(None)
        )
    )


async def erase_contact(session: AsyncSession, workspace_id: int, contact_id: int, *, now: datetime) -> bool:
    """Scrub every personal field in place and take the contact off its list's count; False if absent.

    The guarded UPDATE (``erased_at IS NULL``) makes a concurrent second erasure a no-op that reports
    absent, so the count is decremented once.
    """
    list_id = await session.scalar(
        sa.update(Contact)
        .where(Contact.workspace_id == workspace_id, Contact.id == contact_id, Contact.erased_at.is_(None))
        .values(
            dedupe_key=sa.literal("erased:") + sa.cast(Contact.id, sa.String),
            phone=None,
            phone_type=None,
            phone_region=None,
            time_zones=[],
            sms_capable=False,
            email=None,
            first_name=None,
            last_name=None,
            timezone=None,
            attributes={},
            erased_at=now,
        )
        .returning(Contact.list_id)
        .execution_options(synchronize_session=False)
    )
    if list_id is None:
        return False
    await session.execute(
        sa.update(ContactList)
        .where(ContactList.id == list_id)
        .values(contact_count=ContactList.contact_count - 1, updated_at=now)
    )
    return True
