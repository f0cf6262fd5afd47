"""PostgreSQL going away: the API answers 503 with a JSON body (never 500) meanwhile, and recovers.

The app reaches PostgreSQL through a TCP relay owned by the test, so the database can be "stopped" (the
relay drops every connection and refuses new ones) without touching the server other tests share, and the
app's own backends can be found and killed with ``pg_terminate_backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.exceptions
import sqlalchemy.exc
from aiohttp import web
from aiohttp.test_utils import TestClient

from dispatcher.api.app import create_app
from dispatcher.api.middleware import errors
from dispatcher.ops.auth import create_key
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from tests.conftest import PG_ADMIN_URL, _truncate_pg, bearer

ClientMaker = Callable[..., Awaitable[TestClient]]


class Relay:
    """A TCP relay to PostgreSQL that can be cut (connections dropped, port refusing) and restored."""

    def __init__(self, upstream_port: int = 5432) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()
        self._server = None

    def upstream_ports(self) -> list[int]:
        """Local ports of the relay's PostgreSQL sockets: ``client_port`` in ``pg_stat_activity``."""
        return [upstream.get_extra_info("sockname")[1] for _, upstream in self._links]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[Relay]:
    proxy = Relay()
    await proxy.start()
    yield proxy
    if proxy._server is not None:
        await proxy.cut()


@pytest.fixture
def relayed_settings(relay: Relay, pg_url: str, clean_redis: str, tmp_path: Path) -> Settings:
    database = pg_url.rsplit("/", 1)[1]
    return Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{relay.port}/{database}",
        redis_url=clean_redis,
        var_dir=tmp_path / "var",
        secret_key="test-secret",
        api_rate_limit_per_s=10_000,
        queue_name=f"dispatcher:test:{os.getpid()}",
        clean_processes=0,
    )


@pytest.fixture
async def outage_client(aiohttp_client: ClientMaker, relayed_settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(relayed_settings))


@pytest.fixture
def fresh_pg(pg_url: str) -> str:
    _truncate_pg()
    return pg_url


@pytest.fixture
async def key(fresh_pg: str) -> str:
    engine = create_engine(fresh_pg)
    async with session_factory(engine).begin() as session:
        new = await create_key(
            session, workspace_slug="acme", name="outage", scopes=("admin",), now=datetime.now(UTC)
        )
    await engine.dispose()
    return new.token


async def _expect_unavailable(response: Any) -> None:
    body = await response.json()
    assert response.status == 503, body
    assert response.content_type == "application/json"
    assert body["error"]["code"] == "unavailable"
    assert body["error"]["message"]


async def test_stopped_database_is_503_meanwhile_and_recovers(
    outage_client: TestClient, relay: Relay, key: str
) -> None:
    client = outage_client
    assert (await client.post("/v1/lists", json={"name": "before"}, headers=bearer(key))).status == 201
    await relay.cut()
    for _ in range(3):  # pooled connections are dead and new ones are refused: every request is 503
        await _expect_unavailable(await client.get("/v1/lists", headers=bearer(key)))
        await _expect_unavailable(await client.post("/v1/lists", json={"name": "lost"}, headers=bearer(key)))
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["database"].startswith("error")
    await relay.start()
    created = await client.post("/v1/lists", json={"name": "after"}, headers=bearer(key))
    assert created.status == 201, await created.text()
    page = await (await client.get("/v1/lists", headers=bearer(key))).json()
    assert [item["name"] for item in page["items"]] == ["before", "after"]
    assert (await client.get("/readyz")).status == 200


async def _terminate(ports: list[int]) -> int:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ANY($1::int[])",
            ports,
        )
    finally:
        await conn.close()
    return len(killed)


async def test_terminated_backends_are_replaced_without_errors(
    outage_client: TestClient, relay: Relay, key: str
) -> None:
    client = outage_client
    # several concurrent requests fill the pool with more than one connection
    warm = await asyncio.gather(*(client.get("/v1/lists", headers=bearer(key)) for _ in range(4)))
    assert {r.status for r in warm} == {200}
    assert await _terminate(relay.upstream_ports()) >= 1
    for _ in range(6):
        response = await client.post("/v1/lists", json={"name": "x"}, headers=bearer(key))
        assert response.status == 201, await response.text()
    page = await (await client.get("/v1/lists?limit=100", headers=bearer(key))).json()
    assert len(page["items"]) == 6


async def test_backend_killed_mid_request_is_503_then_recovers(
    outage_client: TestClient, relay: Relay, key: str, relayed_settings: Settings
) -> None:
    client = outage_client
    assert (await client.get("/v1/lists", headers=bearer(key))).status == 200
    # hold a transaction open on the app's engine so its backend is busy, then kill the backend under it
    from dispatcher.api.keys import SESSIONS

    sessions = client.app[SESSIONS]
    async with sessions() as session:
        await session.execute(sqlalchemy.text("SELECT 1"))
        await _terminate(relay.upstream_ports())
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            await session.execute(sqlalchemy.text("SELECT 1"))
    app = web.Application(middlewares=[errors])

    async def reraise(_: web.Request) -> web.Response:
        raise caught.value

    app.router.add_get("/boom", reraise)
    probe = await _client_for(app)
    try:
        await _expect_unavailable(await probe.get("/boom"))
    finally:
        await probe.close()
    assert (await client.get("/v1/lists", headers=bearer(key))).status == 200


async def _client_for(app: web.Application) -> TestClient:
    from aiohttp.test_utils import TestServer

    probe = TestClient(TestServer(app))
    await probe.start_server()
    return probe


def _invalidated() -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True)


def _wrapped_disconnect() -> Exception:
    try:
        try:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        except asyncpg.exceptions.ConnectionDoesNotExistError as inner:
            raise RuntimeError("while committing") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (sqlalchemy.exc.OperationalError("SELECT 1", None, Exception("server closed")), 503),
        (sqlalchemy.exc.InterfaceError("SELECT 1", None, Exception("closed")), 503),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), 503),
        (_invalidated(), 503),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), 503),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), 503),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), 503),
        (ConnectionRefusedError(111, "Connect call failed"), 503),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), 503),
        (redis.exceptions.ConnectionError("Error 111 connecting"), 503),
        (_wrapped_disconnect(), 503),
        (sqlalchemy.exc.DBAPIError("SELECT 1", None, Exception("syntax"), connection_invalidated=False), 500),
        (sqlalchemy.exc.IntegrityError("INSERT", None, Exception("duplicate key")), 500),
        (ValueError("a bug"), 500),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
async def test_connection_level_errors_map_to_503_and_bugs_to_500(exc: BaseException, status: int) -> None:
    app = web.Application(middlewares=[errors])

    async def fail(_: web.Request) -> web.Response:
        raise exc

    app.router.add_get("/fail", fail)
    probe = await _client_for(app)
    try:
        response = await probe.get("/fail")
        body = await response.json()
    finally:
        await probe.close()
    assert response.status == status, body
    assert body["error"]["code"] == ("unavailable" if status == 503 else "internal")
    if status == 503:
        assert response.headers["Retry-After"]
