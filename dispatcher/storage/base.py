"""Declarative base and column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Money = sa.Numeric(14, 6)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite would otherwise hand back naive values."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JsonDoc,
        list[str]: JsonDoc,
    }


class WorkspaceOwned:
    """Every row a marketer can reach carries its workspace; every query filters on it."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def on_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def any_of(session: AsyncSession, column: Any, values: Sequence[Any], item: Any) -> Any:
    """``column IN values``: one array parameter on PostgreSQL (no per-value placeholders to compile and
    send), an expanding IN elsewhere."""
    if on_postgresql(session):
        return column == sa.any_(sa.literal(list(values), postgresql.ARRAY(item)))
    return column.in_(values)


_BY_INDEX = sa.text("SELECT set_config('enable_seqscan', 'off', true)")
_BY_INDEX_AND_HASH = sa.text(
    "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_nestloop', 'off', true)"
)


async def by_index_on_postgresql(session: AsyncSession, *, hash_joins: bool = False) -> None:
    """Keep PostgreSQL off sequential scans of the ledger (and off nested loops, with ``hash_joins``) for
    the rest of the transaction.

    Statistics taken while a campaign was being planned say every row is ``planned``: the planner then
    expects to meet a planned (or a leased) row at once and scans the table from its start, through the
    rows already sent, where an index goes straight to them; and it takes "leased to this owner" for one
    row, which makes a nested loop over a whole chunk look free."""
    if on_postgresql(session):
        await session.execute(_BY_INDEX_AND_HASH if hash_joins else _BY_INDEX)


def insert_ignoring_duplicates(session: AsyncSession, model: Any, unique: list[str]) -> Any:
    """``INSERT … ON CONFLICT (unique) DO NOTHING`` in the session's dialect (PostgreSQL or SQLite)."""
    insert = postgresql.insert if on_postgresql(session) else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=unique)
