"""Browsing and erasing contacts.

Erasure (GDPR-style "forget me") scrubs the person's fields in place instead of deleting the row: the send
ledger and the events point at the contact id, and reports must keep counting those messages. It adds no
suppression on purpose: a suppression stores the very address the person asked us to forget, and erasure
is not an opt-out (someone may ask to be forgotten and later sign up again). An operator who must also
block the address suppresses it explicitly (``POST /v1/suppressions``), a separate, recorded decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from dispatcher.core import segments as filters
from dispatcher.errors import InputError, NotFoundError
from dispatcher.ops.lists import get_list
from dispatcher.storage import contacts_q
from dispatcher.storage import segments as segment_store
from dispatcher.storage.contacts import Contact


@dataclass(frozen=True, slots=True)
class Criteria:
    """The contact listing's query-string filters, as one tree (``attr.<name>=v`` repeated means "in")."""

    sms_capable: bool | None = None
    has_email: bool | None = None
    has_phone: bool | None = None
    phone_region: str | None = None
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def tree(self) -> filters.AllOf:
        nodes: list[filters.Node] = [
            filters.Equals(name, value)
            for name, value in (
                ("sms_capable", self.sms_capable),
                ("has_email", self.has_email),
                ("has_phone", self.has_phone),
            )
            if value is not None
        ]
        if self.phone_region is not None:
            nodes.append(filters.Equals("phone_region", self.phone_region.upper()))
        for name, values in self.attributes.items():
            leaf = (
                filters.Equals(f"attributes.{name}", values[0])
                if len(values) == 1
                else filters.OneOf(f"attributes.{name}", values)
            )
            nodes.append(leaf)
        return filters.AllOf(tuple(nodes))


async def page_contacts(
    session: AsyncSession,
    workspace_id: int,
    list_id: int,
    *,
    criteria: Criteria,
    q: str | None,
    segment_id: int | None,
    after: int,
    limit: int,
    now: datetime,
) -> list[Contact]:
    await get_list(session, workspace_id, list_id)  # 404 for a list of another workspace
    where = segment_store.segment_condition(criteria.tree(), now)
    if q is not None:
        where = where & contacts_q.search_condition(q)
    if segment_id is not None:
        where = where & await _segment_condition(session, workspace_id, list_id, segment_id, now)
    return await contacts_q.page_contacts(
        session, workspace_id, list_id, where=where, after=after, limit=limit
    )


async def _segment_condition(
    session: AsyncSession, workspace_id: int, list_id: int, segment_id: int, now: datetime
) -> ColumnElement[bool]:
    segment = await segment_store.get_segment(session, workspace_id, segment_id)
    if segment is None:
        raise InputError(
            f"segment {segment_id} not found",
            details=[{"field": "segment_id", "message": "no such segment in this workspace"}],
        )
    if segment.list_id != list_id:
        raise InputError(
            f"segment {segment_id} belongs to list {segment.list_id}, not {list_id}",
            details=[{"field": "segment_id", "message": "segment of another list"}],
        )
    return segment_store.segment_condition(filters.parse(segment.filter), now)


async def get_contact(session: AsyncSession, workspace_id: int, contact_id: int) -> Contact:
    found = await contacts_q.get_contact(session, workspace_id, contact_id)
    if found is None:
        raise NotFoundError(f"contact {contact_id} not found")
    return found


async def erase_contact(session: AsyncSession, workspace_id: int, contact_id: int, *, now: datetime) -> None:
    if not await contacts_q.erase_contact(session, workspace_id, contact_id, now=now):
        raise NotFoundError(f"contact {contact_id} not found")
