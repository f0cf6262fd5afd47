"""Engine and session factory. The caller owns the transaction (``async with sessions.begin()``)."""

from __future__ import annotations

from typing import Any

import asyncpg.exceptions as pg_errors  # type: ignore[import-untyped]
import sqlalchemy as sa
import sqlalchemy.exc as sa_errors
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre-ping replaces connections whose backend died (restart, pg_terminate_backend) before a request
    # uses them; the connect timeout keeps a blackholed server from holding requests for asyncpg's 60 s.
    # JIT off: compiling a report's plan costs 0.1-0.3 s and never pays back on 1M rows (bench.report);
    # every other query here is too short to reach the JIT threshold anyway.
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"timeout": 10, "server_settings": {"jit": "off"}},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API and several worker processes share the embedded database file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


# Failures of the link to the database rather than of the statement: the same request may succeed later.
_CONNECTION_LEVEL = (
    sa_errors.OperationalError,  # includes SQLite's "database is locked"
    sa_errors.InterfaceError,
    sa_errors.TimeoutError,  # no pooled connection became free in time
    pg_errors.PostgresConnectionError,  # ConnectionDoesNotExistError, rejected or failed connects
    pg_errors.CannotConnectNowError,
    pg_errors.AdminShutdownError,
    pg_errors.CrashShutdownError,
    pg_errors.TooManyConnectionsError,
    OSError,  # refused or reset sockets, DNS failures, connect timeouts
)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, means the database could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _CONNECTION_LEVEL):
            return True
        if isinstance(current, sa_errors.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
