"""Shared fixtures: real PostgreSQL and Redis (a dedicated database and DB index), and SQLite.

Locally a missing PostgreSQL or Redis skips the tests that need it; in CI (``CI=true``) it fails them, so a
green CI always means the real services were exercised.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_sync
from aiohttp.test_utils import TestClient

from dispatcher.api.app import create_app
from dispatcher.ops.auth import create_key
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.migrations import upgrade
from dispatcher.storage.models import Base

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEST_DB = os.environ.get("TEST_PG_DB", "dispatcher_test")
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_TEST_DB}"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

KeyMaker = Callable[..., Awaitable[str]]


def _missing(what: str, why: str) -> None:
    message = f"{what} not reachable ({why})"
    if IN_CI:
        pytest.fail(f"{message}: CI requires it", pytrace=False)
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    if not _port_open("127.0.0.1", 5432):
        _missing("PostgreSQL", "127.0.0.1:5432 closed")
    asyncio.run(_recreate_pg_database())
    upgrade(PG_URL)
    return PG_URL


async def _recreate_pg_database() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            PG_TEST_DB,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}"')
        await conn.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        client = redis_sync.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis_sync.RedisError as exc:
        _missing("Redis", type(exc).__name__)
    return REDIS_URL


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    client = redis_sync.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()
    client.close()


def _truncate_pg() -> None:
    # DELETE beats TRUNCATE by far on the near-empty tables a test leaves behind.
    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(f'DELETE FROM "{table.name}"')
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    request.getfixturevalue("pg_url")
    _truncate_pg()
    return PG_URL


@pytest.fixture
def settings(db_url: str, clean_redis: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        redis_url=clean_redis,
        var_dir=tmp_path / "var",
        secret_key="test-secret",
        api_rate_limit_per_s=10_000,
        queue_name=f"dispatcher:test:{os.getpid()}",
        worker_shutdown_wait_s=5,
        clean_processes=0,
        allow_private_provider_urls=True,  # the stand-ins listen on 127.0.0.1
    )


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def make_key(settings: Settings) -> AsyncIterator[KeyMaker]:
    engine = create_engine(settings.database_url)

    async def make(workspace: str = "acme", scopes: tuple[str, ...] = ("admin",), name: str = "test") -> str:
        async with session_factory(engine).begin() as session:
            new = await create_key(
                session, workspace_slug=workspace, name=name, scopes=scopes, now=datetime.now(UTC)
            )
        return new.token

    yield make
    await engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """(private key PEM, DNS TXT record) of a fresh 2048-bit key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make an RSA key")
    directory = tmp_path_factory.mktemp("dkim")
    private = directory / "key.pem"
    subprocess.run([openssl, "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        [openssl, "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return private.read_text(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
