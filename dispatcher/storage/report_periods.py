"""The report period of a ledger row as a SQL expression, on PostgreSQL and on SQLite.

A message belongs to the period in which it was sent; one never sent (suppressed, capped, expired, still
pending) to the period in which it was planned. Periods are named by their first day (``2030-01-14``):
days, ISO weeks starting on Monday, or months, in UTC or in the recipient's local time. The recipient's
zone is the ledger row's ``zone``, written when the message was planned (the contact's ``timezone`` field,
else the first zone of its phone number), else UTC. Reading it from the row, not the contact, spares a join
of every ledger row with its contact: 1M rows grouped by local week went from 2.6 s to about the UTC time.

PostgreSQL knows the zones: a row's day is ``timezone(zone, at)::date``, and the day's period
``date_trunc(unit, day)`` is taken once per group of rows. SQLite does not, so Python supplies each zone's
UTC offsets over the report's span (from :mod:`zoneinfo`: one interval between two DST changes, so a
handful per zone and year) as one ``CASE`` expression, and SQLite shifts the instant by it and truncates.
Both run inside the database's ``GROUP BY``; no row comes back to Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from dispatcher.storage.base import UTCDateTime
from dispatcher.storage.campaigns import Message

Period = Literal["day", "week", "month"]
_SQLITE_TRUNC = {
    "day": lambda t: sa.func.date(t),
    "week": lambda t: sa.func.date(t, "weekday 0", "-6 days"),
    "month": lambda t: sa.func.strftime("%Y-%m-01", t),
}


def message_time() -> Any:
    """The instant a ledger row is reported under."""
    return sa.func.coalesce(Message.sent_at, Message.created_at, type_=UTCDateTime())


def recipient_zone() -> Any:
    """The recipient's IANA zone name, as the ledger row recorded it."""
    return sa.func.coalesce(Message.zone, "UTC")


def postgres_day(*, local: bool) -> Any:
    """The ledger row's day (a ``date``), local or UTC; :func:`postgres_period` turns it into its period.

    Truncating every row to its week or month would cost a ``date_trunc`` per row; a day is a cast, and
    the week or month of each day is taken once per group of rows.
    """
    zone = recipient_zone() if local else sa.literal("UTC")
    return sa.cast(sa.func.timezone(zone, message_time()), sa.Date)


def postgres_period(period: Period, day: Any) -> Any:
    """The first moment (a ``timestamp``) of the period holding ``day``; :func:`postgres_period_name`
    names it."""
    return sa.func.date_trunc(period, sa.cast(day, sa.DateTime()))


def postgres_period_name(start: Any) -> Any:
    return sa.func.to_char(start, "YYYY-MM-DD")


@dataclass(frozen=True, slots=True)
class Offset:
    """``seconds`` east of UTC for instants before ``until`` (``None``: from then on)."""

    until: datetime | None
    seconds: int


def zone_offsets(zone: str, start: datetime, end: datetime) -> list[Offset]:
    """The UTC offsets ``zone`` uses between ``start`` and ``end``, oldest first.

    Unknown zone names count as UTC. Offsets are found by stepping a day at a time and bisecting each
    change to the second, which is exact for every rule in the tz database (changes are hours apart).
    """
    try:
        info = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return [Offset(None, 0)]

    def offset(at: datetime) -> int:
        delta = at.astimezone(info).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    found: list[Offset] = []
    at = start - timedelta(days=1)
    current = offset(at)
    while at < end + timedelta(days=1):
        step = at + timedelta(days=1)
        if offset(step) != current:
            low, high = at, step  # offset(low) == current != offset(high)
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset(middle) == current else (low, middle)
            found.append(Offset(high.replace(microsecond=0), current))
            current = offset(high)
        at = step
    found.append(Offset(None, current))
    return found


def sqlite_period(period: Period, offsets: dict[str, list[Offset]] | None) -> Any:
    """``offsets``: per zone name, as :func:`zone_offsets` gives them; ``None`` for UTC periods."""
    moment = message_time()
    if offsets:
        zone = recipient_zone()
        arms = []
        for name, spans in sorted(offsets.items()):
            for span in spans:
                condition = zone == sa.literal(name)
                if span.until is not None:
                    condition = sa.and_(condition, moment < sa.literal(span.until, UTCDateTime()))
                arms.append((condition, f"{span.seconds:+d} seconds"))
        moment = sa.func.datetime(moment, sa.case(*arms, else_="+0 seconds"))
    return _SQLITE_TRUNC[period](moment)
