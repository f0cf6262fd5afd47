"""Segments: stored filters, and the compiler from a filter tree to one SQL condition on ``contacts``.

:func:`segment_condition` is what the campaign engine calls to freeze an audience; the same SQL runs on
PostgreSQL and SQLite. Where the two databases differ (is this text a number?) a small construct compiles
per dialect. Engagement is per contact row: an event counts for the contact it was recorded against, and
machine clicks (link scanners) never count.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from dispatcher.core.segments import (
    AllOf,
    AnyOf,
    Between,
    Engaged,
    Equals,
    Exists,
    Node,
    NotOf,
    OneOf,
    Scalar,
    attribute_of,
    is_number,
)
from dispatcher.storage.campaigns import Campaign, Event
from dispatcher.storage.contacts import Contact, Segment

_Value = ColumnElement[Any] | InstrumentedAttribute[Any]
_EVENT_KIND = {"clicked": "click", "replied": "reply"}


class NumericText(FunctionElement[Any]):
    """The number a text value spells in JSON syntax (``30``, ``-2.5``, ``1e3``), else NULL.

    Both databases accept exactly the JSON number grammar, so ``025``, ``+5`` and ``25-34`` are not numbers
    on either; a plain CAST would read ``25-34`` as 25 on SQLite and raise on PostgreSQL.
    """

    type = sa.Numeric()
    name = "numeric_text"
    inherit_cache = True


@compiles(NumericText)
def _numeric_text_sqlite(element: NumericText, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(next(iter(element.clauses)), **kw)
    return (
        f"(CASE WHEN json_valid({arg}) THEN CASE WHEN json_type({arg}) IN ('integer', 'real') "
        f"THEN CAST({arg} AS REAL) END END)"
    )


@compiles(NumericText, "postgresql")
def _numeric_text_pg(element: NumericText, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(next(iter(element.clauses)), **kw)
    # digits and exponent are bounded so that NUMERIC never overflows on a pathological cell
    pattern = r"^\s*-?(0|[1-9][0-9]{0,99})(\.[0-9]{1,100})?([eE][-+]?[0-9]{1,3})?\s*$"
    return f"(CASE WHEN {arg} ~ '{pattern}' THEN CAST({arg} AS NUMERIC) END)"


def segment_condition(tree: Node, now: datetime) -> ColumnElement[bool]:
    """One WHERE condition over :class:`Contact` for a parsed filter; never NULL (see core.segments)."""
    match tree:
        case AllOf(nodes):
            return sa.and_(sa.true(), *(segment_condition(n, now) for n in nodes))
        case AnyOf(nodes):
            return sa.or_(sa.false(), *(segment_condition(n, now) for n in nodes))
        case NotOf(inner):
            return sa.not_(segment_condition(inner, now))
        case Engaged(action, days):
            return _engaged(action, now - timedelta(days=days))
        case Exists(name, present):
            return _exists(name) if present else sa.not_(_exists(name))
        case Equals(name, value):
            return _equals(name, value)
        case OneOf(name, values):
            return sa.or_(sa.false(), *(_equals(name, v) for v in values))
        case Between(name, bounds):
            return _between(name, bounds)


def _engaged(action: str, since: datetime) -> ColumnElement[bool]:
    return sa.exists().where(
        Event.workspace_id == Contact.workspace_id,
        Event.contact_id == Contact.id,
        Event.kind == _EVENT_KIND[action],
        Event.occurred_at >= since,
        Event.machine.is_(False),
    )


def _text(name: str) -> _Value:
    attribute = attribute_of(name)
    if attribute is not None:
        text: ColumnElement[str] = Contact.attributes[attribute].as_string()
        return text
    return {"phone_region": Contact.phone_region, "phone_type": Contact.phone_type}[name]


def _known(value: _Value, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """``x IS NOT NULL AND cond``: false, not NULL, when the value is missing, so NOT behaves."""
    return sa.and_(value.is_not(None), condition)


def _exists(name: str) -> ColumnElement[bool]:
    if name == "timezone":
        return sa.or_(Contact.timezone.is_not(None), sa.cast(Contact.time_zones, sa.Text) != "[]")
    return _text(name).is_not(None)


def _equals(name: str, value: Scalar | bool) -> ColumnElement[bool]:
    if isinstance(value, bool):
        return _flag(name, value)
    if name == "timezone":
        return _in_zone(str(value))
    if is_number(value):
        number = NumericText(_text(name))
        return _known(number, number == value)
    text = _text(name)
    return _known(text, text == value)


def _flag(name: str, value: bool) -> ColumnElement[bool]:
    if name == "sms_capable":
        return Contact.sms_capable.is_(value)
    column = Contact.email if name == "has_email" else Contact.phone
    return column.is_not(None) if value else column.is_(None)


def _in_zone(zone: str) -> ColumnElement[bool]:
    """The contact's own zone when it has one, else any zone of its phone number."""
    quoted = '%"' + zone.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
    from_phone = sa.cast(Contact.time_zones, sa.Text).like(quoted, escape="\\")
    return sa.or_(
        _known(Contact.timezone, Contact.timezone == zone),
        sa.and_(Contact.timezone.is_(None), from_phone),
    )


def _between(name: str, bounds: tuple[tuple[str, Scalar], ...]) -> ColumnElement[bool]:
    value = NumericText(_text(name)) if all(is_number(v) for _, v in bounds) else _text(name)
    checks = [
        {"gt": value > bound, "gte": value >= bound, "lt": value < bound, "lte": value <= bound}[op]
        for op, bound in bounds
    ]
    return _known(value, sa.and_(*checks))


async def add_segment(
    session: AsyncSession,
    *,
    workspace_id: int,
    list_id: int,
    name: str,
    filter_doc: dict[str, Any],
    now: datetime,
) -> Segment:
    row = Segment(workspace_id=workspace_id, list_id=list_id, name=name, filter=filter_doc, created_at=now)
    session.add(row)
    await session.flush()
    return row


async def get_segment(session: AsyncSession, workspace_id: int, segment_id: int) -> Segment | None:
    return await session.scalar(
        sa.select(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id)
    )


async def page_segments(
    session: AsyncSession, workspace_id: int, *, list_id: int | None, after: int, limit: int
) -> list[Segment]:
    query = sa.select(Segment).where(Segment.workspace_id == workspace_id, Segment.id > after)
    if list_id is not None:
        query = query.where(Segment.list_id == list_id)
    return list(await session.scalars(query.order_by(Segment.id).limit(limit)))


async def campaign_using(session: AsyncSession, workspace_id: int, segment_id: int) -> int | None:
    return await session.scalar(
        sa.select(Campaign.id)
        .where(Campaign.workspace_id == workspace_id, Campaign.segment_id == segment_id)
        .limit(1)
    )


async def delete_segment(session: AsyncSession, workspace_id: int, segment_id: int) -> bool:
    result = await session.execute(
        sa.delete(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id)
    )
    return bool(getattr(result, "rowcount", 0))
