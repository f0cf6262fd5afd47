"""The audience of a campaign, read in keyset pages, and the batched writes of its send ledger.

The audience is a list's live contacts, optionally narrowed by a segment's filter, and bounded by the
largest contact id the list had when the campaign started (so contacts added later stay out, also when a
crashed planning job runs again). Ledger rows go in with ``ON CONFLICT (campaign_id, contact_id) DO
NOTHING``: writing a page twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from dispatcher.core import segments as filters
from dispatcher.core.allocation import Recipient
from dispatcher.storage.base import on_postgresql
from dispatcher.storage.campaigns import IS_LEASED, IS_NOT_LEASED, Message
from dispatcher.storage.contacts import Contact, Suppression
from dispatcher.storage.contacts_q import in_list
from dispatcher.storage.segments import segment_condition

_ELEMENT: dict[str, Any] = {
    "bigint": sa.BigInteger(),
    "varchar": sa.String(),
    "timestamptz": sa.DateTime(timezone=True),
}
_COLUMNS = (
    Contact.id,
    Contact.phone,
    Contact.email,
    Contact.sms_capable,
    Contact.time_zones,
    Contact.timezone,
)


def audience_condition(
    workspace_id: int,
    list_id: int,
    *,
    segment_filter: Mapping[str, Any] | None,
    max_id: int | None,
    now: datetime,
) -> ColumnElement[bool]:
    condition = in_list(workspace_id, list_id)
    if segment_filter is not None:
        condition = sa.and_(condition, segment_condition(filters.parse(segment_filter), now))
    if max_id is not None:
        condition = sa.and_(condition, Contact.id <= max_id)
    return condition


def reachable(channel: str) -> ColumnElement[bool]:
    """Contacts with an address the channel can use (the rest are counted as excluded)."""
    if channel == "sms":
        return sa.and_(Contact.phone.is_not(None), Contact.sms_capable.is_(True))
    return Contact.email.is_not(None)


async def page_recipients(
    session: AsyncSession, where: ColumnElement[bool], *, after: int, limit: int
) -> list[Recipient]:
    rows = await session.execute(
        sa.select(*_COLUMNS).where(where, Contact.id > after).order_by(Contact.id).limit(limit)
    )
    return [
        Recipient(int(cid), phone, email, bool(capable), tuple(zones or ()), zone)
        for cid, phone, email, capable, zones, zone in rows
    ]


async def count_audience(session: AsyncSession, where: ColumnElement[bool]) -> int:
    return int(await session.scalar(sa.select(sa.func.count()).select_from(Contact).where(where)) or 0)


async def suppressed_among(
    session: AsyncSession, workspace_id: int, channel: str, addresses: Iterable[str]
) -> set[str]:
    wanted = sorted(set(addresses))
    if not wanted:
        return set()
    rows = await session.scalars(
        sa.select(Suppression.address).where(
            Suppression.workspace_id == workspace_id,
            Suppression.channel.in_((channel, "all")),
            Suppression.address.in_(wanted),
        )
    )
    return set(rows)


LEDGER_COMMON = ("workspace_id", "campaign_id", "channel", "created_at")
LEDGER_VARYING = (
    "batch_id",
    "contact_id",
    "variant",
    "address",
    "state",
    "not_before",
    "finished_at",
    "error_code",
    "zone",
)
_BIGINT, _TEXT, _MOMENT = sa.BigInteger(), sa.String(), sa.DateTime(timezone=True)
_ARRAYS: dict[str, Any] = {
    "batch_id": _BIGINT, "contact_id": _BIGINT, "variant": _TEXT, "address": _TEXT, "state": _TEXT,
    "not_before": _MOMENT, "finished_at": _MOMENT, "error_code": _TEXT, "zone": _TEXT,
}  # fmt: skip
# PostgreSQL: one statement per page whatever its size, fed column arrays (about twice executemany's speed).
_UNNEST_INSERT = sa.text(
    """
    INSERT INTO messages (workspace_id, campaign_id, channel, attempts, possible_duplicate, created_at,
                          updated_at, batch_id, contact_id, variant, address, state, not_before, finished_at,
                          error_code, zone)
    SELECT CAST(:workspace_id AS bigint), CAST(:campaign_id AS bigint), CAST(:channel AS varchar), 0, false,
           CAST(:created_at AS timestamptz), CAST(:created_at AS timestamptz), u.*
    FROM unnest(CAST(:batch_id AS bigint[]), CAST(:contact_id AS bigint[]), CAST(:variant AS varchar[]),
                CAST(:address AS varchar[]), CAST(:state AS varchar[]), CAST(:not_before AS timestamptz[]),
                CAST(:finished_at AS timestamptz[]), CAST(:error_code AS varchar[]),
                CAST(:zone AS varchar[])) AS u
    ON CONFLICT (campaign_id, contact_id) DO NOTHING
    """
).bindparams(*(sa.bindparam(name, type_=postgresql.ARRAY(kind)) for name, kind in _ARRAYS.items()))


def ledger_zone(recipient: Recipient) -> str | None:
    """The zone a ledger row records for local-time reports: the contact's field, else its number's first."""
    if recipient.timezone is not None:
        return recipient.timezone
    return recipient.time_zones[0] if recipient.time_zones else None


async def insert_ledger(
    session: AsyncSession, common: Mapping[str, Any], rows: Sequence[Sequence[Any]]
) -> None:
    """Write one page of ledger rows in one statement; rows already there are left alone.

    ``common`` holds :data:`LEDGER_COMMON` (the same for the whole page), each row the values of
    :data:`LEDGER_VARYING` in that order.
    """
    if not rows:
        return
    if on_postgresql(session):
        columns = {
            name: list(values) for name, values in zip(LEDGER_VARYING, zip(*rows, strict=True), strict=True)
        }
        await session.execute(_UNNEST_INSERT, {**common, **columns})
        return
    fixed = {**common, "updated_at": common["created_at"], "attempts": 0, "possible_duplicate": False}
    statement = sqlite.insert(Message).on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"])
    await session.execute(
        statement, [{**fixed, **dict(zip(LEDGER_VARYING, row, strict=True))} for row in rows]
    )


async def zone_groups(
    session: AsyncSession, where: ColumnElement[bool]
) -> list[tuple[tuple[str, ...], str | None, int]]:
    """(number zones, contact zone, contacts) over the audience: few groups, however many contacts."""
    zones = sa.cast(Contact.time_zones, sa.Text)  # JSON is not groupable on every database; its text is
    rows = await session.execute(
        sa.select(zones, Contact.timezone, sa.func.count()).where(where).group_by(zones, Contact.timezone)
    )
    return [(_zone_tuple(text), zone, int(n)) for text, zone, n in rows]


async def pending_send_times(session: AsyncSession, campaign_id: int) -> list[tuple[datetime, int]]:
    """(first send instant, rows) of a started campaign's rows still waiting to go: few distinct instants.

    Planned rows are read through ix_messages_due, queued ones through ix_messages_state_lease."""
    waiting = [
        sa.select(Message.not_before, sa.func.count())
        .where(Message.campaign_id == campaign_id, Message.not_before.is_not(None), *rows)
        .group_by(Message.not_before)
        for rows in ([Message.state == "planned"], [IS_LEASED, Message.state == "queued"])
    ]
    found: dict[datetime, int] = {}
    for when, n in await session.execute(sa.union_all(*waiting)):
        if when is not None:
            found[when] = found.get(when, 0) + int(n)
    return sorted(found.items())


async def failed_page(
    session: AsyncSession, campaign_id: int, *, permanent: Iterable[str], after: int, limit: int
) -> list[tuple[int, Recipient]]:
    """Failed rows whose error may pass (not a permanent reason), with their contact, by ledger id."""
    code = sa.func.coalesce(Message.error_code, "")
    rows = await session.execute(
        sa.select(Message.id, *_COLUMNS)
        .join(Contact, Contact.id == Message.contact_id)
        .where(
            Message.campaign_id == campaign_id,
            Message.state == "failed",
            IS_NOT_LEASED,  # always true of failed rows: names ix_messages_campaign_state's rows for SQLite
            code.not_in(list(permanent)),
            Message.id > after,
        )
        .order_by(Message.id)
        .limit(limit)
    )
    return [
        (int(mid), Recipient(int(cid), phone, email, bool(capable), tuple(zones or ()), zone))
        for mid, cid, phone, email, capable, zones, zone in rows
    ]


async def replan_failed(
    session: AsyncSession, batch_id: int, updates: Sequence[tuple[int, datetime]], *, now: datetime
) -> None:
    """Failed rows back to planned in the resend batch: attempts reset, new first send instant, a new
    idempotency key to be drawn (the old one may name a message the provider accepted, then lost).
    ``possible_duplicate`` stays as it was. Guarded on ``state = 'failed'``."""
    if not updates:
        return
    table = cast(sa.Table, Message.__table__)  # Core form: executemany keyed by a bound id
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("row_id"), table.c.state == "failed")
        .values(
            state="planned", batch_id=batch_id, attempts=0, not_before=sa.bindparam("when"),
            idempotency_key=None, lease_until=None, lease_owner=None, error_code=None, error_detail=None,
            finished_at=None, queued_at=None, updated_at=now,
        )
    )  # fmt: skip
    await session.execute(statement, [{"row_id": mid, "when": when} for mid, when in updates])


def _zone_tuple(text: str | None) -> tuple[str, ...]:
    value = json.loads(text) if text else []
    return tuple(str(z) for z in value) if isinstance(value, list) else ()
