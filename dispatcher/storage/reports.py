"""Report aggregation: every figure is counted by the database's GROUP BY, never row by row in Python.

A report asks for one or more groupings of ledger rows (``("batch",)``, ``("channel",)``, ``()`` for
totals …) under one :class:`Scope`; one statement answers them all (:mod:`dispatcher.storage.report_sql`),
and Python only turns its rows (one per group) into :class:`~dispatcher.core.rates.Tally` values. What each
figure means is documented in :mod:`dispatcher.core.rates`; how periods are cut, in
:mod:`dispatcher.storage.report_periods`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.rates import Tally
from dispatcher.storage import report_periods as periods
from dispatcher.storage import report_sql as sql
from dispatcher.storage.campaigns import Batch, Campaign, Message
from dispatcher.storage.content import Provider

Dimension = Literal["campaign", "batch", "channel", "provider", "sender", "variant", "period"]
DIMENSIONS: tuple[Dimension, ...] = (
    "campaign",
    "batch",
    "channel",
    "provider",
    "sender",
    "variant",
    "period",
)
Grouping = tuple[Dimension, ...]
Key = tuple[Any, ...]
REPORT_WORK_MEM = "64MB"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which ledger rows a report covers; ``start`` inclusive, ``end`` exclusive, on the message time."""

    workspace_id: int
    campaign_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    period: periods.Period = "day"
    local: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    key: Key  # one value per dimension of the grouping, in its order
    tally: Tally


async def aggregate(session: AsyncSession, scope: Scope, groupings: Sequence[Grouping]) -> list[list[Group]]:
    """One list of groups per grouping (sorted by key), in the order asked: one statement, one scan."""
    dialect = session.get_bind().dialect.name
    union = tuple(d for d in DIMENSIONS if any(d in g for g in groupings))
    offsets = await _sqlite_offsets(session, scope) if dialect == "sqlite" and "period" in union else None
    columns = _dimension_columns(union, dialect, scope, offsets)
    engagement = sql.engagement_per_message(scope.workspace_id, scope.campaign_id)
    labelled: dict[str, Any] = {str(d): column for d, column in columns.items()}
    fine = sql.fine_groups(_base(scope), labelled, engagement, dialect, _refined(union, dialect, scope))
    found: list[dict[Key, Any]] = [{} for _ in groupings]
    async with _tuned(session, dialect):
        shown = {"period": periods.postgres_period_name} if dialect == "postgresql" else None
        result = await session.execute(sql.groupings_statement(fine, groupings, union, shown))
        for row in result.mappings():
            index = int(row["grouping"])
            found[index][tuple(row[f"d_{d}"] for d in groupings[index])] = row
    return [[Group(key, _tally(rows[key])) for key in sorted(rows, key=_sortable)] for rows in found]


@asynccontextmanager
async def _tuned(session: AsyncSession, dialect: str) -> AsyncIterator[None]:
    """PostgreSQL settings for the report statement, in this transaction only.

    It estimates one group per row when grouping by a period (it falls back on the distinct timestamps)
    and so sorts a million rows (~1 s) where hashing the few real groups takes ~0.3 s; the groups of a
    report are few by construction (they all come back as rows), so sorting is discouraged. The window
    sums sort a little; ``work_mem`` keeps that in memory. JIT compiling the statement costs more (~0.3 s)
    than it saves.
    """
    if dialect != "postgresql":
        yield
        return
    for setting in (f"work_mem = '{REPORT_WORK_MEM}'", "jit = off", "enable_sort = off"):
        await session.execute(sa.text(f"SET LOCAL {setting}"))
    yield
    await session.execute(sa.text("SET LOCAL enable_sort = on"))


async def failure_reasons(session: AsyncSession, scope: Scope, limit: int = 50) -> list[tuple[str, int]]:
    """Failed rows per error code (``unknown`` when none was recorded), most frequent first."""
    code = sa.func.coalesce(Message.error_code, "unknown").label("code")
    count = sa.func.count().label("n")
    rows = await session.execute(
        _filtered(sa.select(code, count), scope)
        .where(Message.state == "failed")
        .group_by(code)
        .order_by(count.desc(), code)
        .limit(limit)
    )
    return [(str(c), int(n)) for c, n in rows]


async def names(
    session: AsyncSession, workspace_id: int, groups: Iterable[tuple[Grouping, Key]]
) -> dict[tuple[str, int], str]:
    """Display names for the ids in ``groups``: campaign names, batch codes, provider names."""
    wanted: dict[str, set[int]] = {"campaign": set(), "batch": set(), "provider": set()}
    for grouping, key in groups:
        for dimension, value in zip(grouping, key, strict=True):
            if dimension in wanted and value is not None:
                wanted[dimension].add(int(value))
    sources: dict[str, tuple[Any, Any]] = {
        "campaign": (Campaign.id, Campaign.name),
        "batch": (Batch.id, sa.func.coalesce(Batch.code, "")),
        "provider": (Provider.id, Provider.name),
    }
    found: dict[tuple[str, int], str] = {}
    for wanted_dimension, ids in wanted.items():
        if not ids:
            continue
        ident, label = sources[wanted_dimension]
        table = ident.class_
        rows = await session.execute(
            sa.select(ident, label).where(table.workspace_id == workspace_id, ident.in_(sorted(ids)))
        )
        found.update({(wanted_dimension, int(i)): str(name) for i, name in rows})
    return found


def _sortable(key: Key) -> tuple[tuple[bool, Any], ...]:
    return tuple((value is None, value if value is not None else 0) for value in key)


def _filtered(statement: Any, scope: Scope) -> Any:
    moment = periods.message_time()
    statement = statement.where(Message.workspace_id == scope.workspace_id)
    if scope.campaign_id is not None:
        statement = statement.where(Message.campaign_id == scope.campaign_id)
    if scope.start is not None:
        statement = statement.where(moment >= scope.start)
    if scope.end is not None:
        statement = statement.where(moment < scope.end)
    return statement


def _dimension_columns(
    union: Grouping, dialect: str, scope: Scope, offsets: dict[str, list[periods.Offset]] | None
) -> dict[Dimension, Any]:
    """Per ledger row; :func:`_refined` finishes the sender and the PostgreSQL period per group."""
    columns: dict[Dimension, Any] = {
        "campaign": Message.campaign_id,
        "batch": Message.batch_id,
        "channel": Message.channel,
        "provider": Message.provider_id,
        "sender": Message.campaign_id,
        "variant": Message.variant,
    }
    if "period" in union:
        columns["period"] = (
            periods.postgres_day(local=scope.local)
            if dialect == "postgresql"
            else periods.sqlite_period(scope.period, offsets)
        )
    return {d: columns[d].label(f"d_{d}") for d in union}


def _refined(union: Grouping, dialect: str, scope: Scope) -> dict[str, Callable[[Any], Any]]:
    refined: dict[str, Callable[[Any], Any]] = {}
    if "sender" in union:
        refined["sender"] = lambda campaign: (
            sa.select(Campaign.sender).where(Campaign.id == campaign).scalar_subquery()
        )
    if "period" in union and dialect == "postgresql":
        refined["period"] = lambda day: periods.postgres_period(scope.period, day)
    return refined


def _base(scope: Scope) -> Any:
    return _filtered(sa.select().select_from(Message), scope)


async def _sqlite_offsets(session: AsyncSession, scope: Scope) -> dict[str, list[periods.Offset]] | None:
    """Each recipient zone's UTC offsets over the span of the rows in scope (local periods only)."""
    if not scope.local:
        return None
    moment = periods.message_time()
    zone = periods.recipient_zone().label("zone")
    statement = sa.select(zone, sa.func.min(moment), sa.func.max(moment)).select_from(Message)
    statement = _filtered(statement, scope).group_by(zone)
    return {
        str(name): periods.zone_offsets(str(name), low, high)
        for name, low, high in await session.execute(statement)
    }


def _tally(row: Any) -> Tally:
    median = row["median_ms"]
    return Tally(
        **{name: int(row[name]) for name in (*sql.LEDGER_COUNTS, *sql.ENGAGED, "conversions")},
        conversion_value=_money(row["conversion_value"]),
        cost=_money(row["cost"]),
        median_seconds_to_delivery=round(float(median) / 1000, 3) if median is not None else None,
    )


def _money(value: Any) -> Decimal:
    """SQLite sums NUMERIC as floating point: back to the column's six decimal places."""
    return Decimal(str(value)).quantize(_MONEY_STEP)


_MONEY_STEP = Decimal("0.000001")
