"""Fault-injection tools shared by ``tests/pipeline/test_faults.py`` and ``bench/faults.py``.

- worker processes (``dispatcher worker``) started from a ``Settings``, stopped by signal;
- a private ``redis-server`` on a free port that can be killed and started again (never the shared one);
- the SMS stand-in wrapped so that it logs every attempt (start, end, token, HTTP status, ``Retry-After``):
  the stand-in itself keeps only accepted messages, and "no retry sooner than Retry-After" needs the
  refused attempts too. It can also play a provider without idempotency by ignoring the token header;
- a watch that reads the campaign state and the ledger in one statement, so "completed while something is
  pending" is seen exactly as a reader of the database would see it.

``python -m tests.pipeline.fault_tools --port P [--rate-429 ...]`` serves the logging stand-in in its own
process (the benchmark's provider).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import sqlalchemy as sa
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.channels.fake_sms import add_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.channels.twilio_http import IDEMPOTENCY_HEADER
from dispatcher.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ATTEMPTS: Final = web.AppKey("fault_attempts", list)
ACTIVE: Final = ("planned", "queued", "sending")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- worker processes -----------------------------------------------------------------------------------


def worker_env(settings: Settings) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url or "",
        DISPATCHER_QUEUE=settings.queue_name,
        DISPATCHER_VAR_DIR=str(settings.var_dir),
        DISPATCHER_SECRET_KEY=settings.secret_key or "faults",
        DISPATCHER_SEND_LEASE=str(settings.send_lease_s),
        DISPATCHER_QUEUE_LEASE=str(settings.queue_lease_s),
        DISPATCHER_SHUTDOWN_WAIT=str(settings.worker_shutdown_wait_s),
        DISPATCHER_WORKER_MAX_JOBS=str(settings.worker_max_jobs),
        DISPATCHER_LOG_LEVEL="WARNING",
    )


async def start_worker(settings: Settings, log: Path | None = None) -> asyncio.subprocess.Process:
    """``log``: append the worker's output there (benchmarks grep it for errors) instead of inheriting."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("ab")) if log else None
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dispatcher", "worker", env=worker_env(settings), stdout=out, stderr=out
        )


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM, wait: float = 60.0) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), wait)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def wait_for_heartbeat(engine: AsyncEngine, pid: int, timeout: float = 60.0) -> None:
    """Until the worker with this pid has written its first heartbeat (it is connected and taking jobs)."""
    query = sa.text("SELECT count(*) FROM worker_heartbeats WHERE pid = :pid")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the database may be the thing under fault
            async with engine.connect() as conn:
                if await conn.scalar(query, {"pid": pid}):
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"worker {pid} did not start within {timeout:.0f} s")


# --- a private Redis ------------------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    """``redis-server`` on its own port without persistence: a restart forgets every queued job."""

    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--maxmemory-policy", "noeviction",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            for _ in range(100):
                with contextlib.suppress(RedisError):
                    if await client.ping():
                        return
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise RuntimeError(f"redis-server on port {self.port} did not come up")

    async def kill(self) -> None:
        if self.proc is not None:
            await stop(self.proc, signal.SIGKILL)
            self.proc = None

    async def restart(self, down_for: float = 1.0) -> None:
        await self.kill()
        await asyncio.sleep(down_for)  # workers see refused connections meanwhile
        await self.start()
        self.restarts += 1


# --- the stand-in, logging every attempt ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    start: float
    end: float
    token: str
    status: int  # 0: the client gave up first (a timeout)
    retry_after: float | None


def _attempt_logger(honour_idempotency: bool) -> Any:
    @web.middleware
    async def log_attempt(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or not request.path.endswith("/Messages.json"):
            return await handler(request)
        token = request.headers.get(IDEMPOTENCY_HEADER, "")
        if not honour_idempotency:  # a provider that has never heard of the header
            headers = request.headers.copy()
            headers.popall(IDEMPOTENCY_HEADER, None)
            request = request.clone(headers=headers)
        started, status, retry_after = time.time(), 0, None
        try:
            response = await handler(request)
            status = response.status
            retry_after = float(response.headers.get("Retry-After", "") or 0) or None
            return response
        finally:
            request.app[ATTEMPTS].append(Attempt(started, time.time(), token, status, retry_after))

    return log_attempt


async def attempts_view(request: web.Request) -> web.Response:
    rows = request.app[ATTEMPTS]
    return web.json_response({"attempts": [[a.start, a.end, a.token, a.status, a.retry_after] for a in rows]})


def logging_stub_app(config: FakeSmsConfig, *, honour_idempotency: bool = True) -> web.Application:
    app = web.Application(middlewares=[_attempt_logger(honour_idempotency)])
    app[ATTEMPTS] = []
    app.router.add_get("/_faults/attempts", attempts_view)
    add_fake_sms(app, config)  # after our own route: the stand-in takes every other path
    return app


async def start_logging_stub(
    config: FakeSmsConfig, *, honour_idempotency: bool = True
) -> tuple[web.AppRunner, str]:
    app = logging_stub_app(config, honour_idempotency=honour_idempotency)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def get_json(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body: dict[str, Any] = await response.json()
        return body


async def stub_stats(url: str) -> dict[str, Any]:
    return await get_json(url + "/_stub/stats")


async def stub_attempts(url: str) -> list[Attempt]:
    rows = (await get_json(url + "/_faults/attempts"))["attempts"]
    return [Attempt(float(s), float(e), str(t), int(c), r) for s, e, t, c, r in rows]


@dataclass(frozen=True, slots=True)
class RetryCheck:
    refused: int  # attempts answered with a Retry-After
    retried: int  # of those, how many were followed by another attempt of the same message
    early: int  # ... that started before the Retry-After had passed
    min_margin_s: float | None  # smallest (next start - refusal end - Retry-After) seen


def check_retry_after(attempts: list[Attempt]) -> RetryCheck:
    by_token: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_token.setdefault(attempt.token, []).append(attempt)
    refused = retried = early = 0
    margins: list[float] = []
    for rows in by_token.values():
        rows.sort(key=lambda a: a.start)
        for first, later in zip(rows, [*rows[1:], None], strict=True):
            if first.retry_after is None:
                continue
            refused += 1
            if later is not None:
                retried += 1
                margins.append(later.start - first.end - first.retry_after)
                early += margins[-1] < 0
    return RetryCheck(refused, retried, early, min(margins) if margins else None)


# --- the ledger, as a reader sees it --------------------------------------------------------------------

_SNAPSHOT = sa.text(
    """
    SELECT c.state,
           (SELECT count(*) FROM messages m WHERE m.campaign_id = c.id AND m.state IN :active) AS pending
    FROM campaigns c WHERE c.id = :cid
    """
).bindparams(sa.bindparam("active", expanding=True))


@dataclass
class Watch:
    """Polls (campaign state, rows pending) in one statement; records every sight of ``completed`` with
    rows still pending."""

    engine: AsyncEngine
    campaign_id: int
    looks: int = 0
    premature: int = 0
    errors: int = 0
    state: str = ""
    pending: int = -1

    async def look(self) -> None:
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(_SNAPSHOT, {"cid": self.campaign_id, "active": ACTIVE})).one()
        except Exception:  # the database may be the thing under fault: count it, look again
            self.errors += 1
            return
        self.looks += 1
        self.state, self.pending = str(row[0]), int(row[1])
        if self.state == "completed" and self.pending:
            self.premature += 1

    async def until_done(self, timeout: float, every: float = 0.2) -> bool:
        """Look until the campaign is completed with nothing pending; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.look()
            if self.state == "completed" and self.pending == 0:
                return True
            await asyncio.sleep(every)
        return False


async def ledger_summary(engine: AsyncEngine, campaign_id: int) -> tuple[dict[str, int], set[str]]:
    """Rows per state, and the addresses of rows flagged as possible duplicates."""
    async with engine.connect() as conn:
        states = await conn.execute(
            sa.text("SELECT state, count(*) FROM messages WHERE campaign_id = :c GROUP BY state"),
            {"c": campaign_id},
        )
        flagged = await conn.scalars(
            sa.text("SELECT address FROM messages WHERE campaign_id = :c AND possible_duplicate"),
            {"c": campaign_id},
        )
        return {str(s): int(n) for s, n in states}, set(flagged)


async def recipients(url: str) -> tuple[set[str], set[str]]:
    """Recipients the stand-in recorded at least once, and those it recorded more than once."""
    seen: set[str] = set()
    twice: set[str] = set()
    since = 0
    while True:
        page = await get_json(f"{url}/_stub/messages?since={since}&limit=100000")
        for message in page["messages"]:
            (twice if message["to"] in seen else seen).add(message["to"])
        if not page["messages"]:
            return seen, twice
        since = int(page["next"])


async def unsent(engine: AsyncEngine, campaign_id: int) -> dict[tuple[str, str | None], set[str]]:
    """Addresses of rows not ``sent``, by (state, error code)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT state, error_code, address FROM messages WHERE campaign_id = :c AND state <> 'sent'"
            ),
            {"c": campaign_id},
        )
        found: dict[tuple[str, str | None], set[str]] = {}
        for state, code, address in rows:
            found.setdefault((str(state), code), set()).add(str(address))
        return found


async def set_provider(engine: AsyncEngine, campaign_id: int, **config: Any) -> None:
    """Merge ``config`` into the campaign's provider config (e.g. ``idempotency=False``)."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE providers SET config = config || CAST(:patch AS JSONB) "
                "WHERE id = (SELECT provider_id FROM campaigns WHERE id = :c)"
            ),
            {"patch": json.dumps(config), "c": campaign_id},
        )


def main(argv: list[str] | None = None) -> None:
    """Serve the logging stand-in; fault options as ``dispatcher fake-sms`` names them."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-5xx", type=float, default=0.0)
    parser.add_argument("--rate-timeout", type=float, default=0.0)
    parser.add_argument("--no-idempotency", action="store_true", help="ignore the idempotency header")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    config = FakeSmsConfig(
        seed=args.seed,
        rate_429=args.rate_429,
        rate_503=args.rate_5xx,
        rate_timeout_after=args.rate_timeout,
    )
    app = logging_stub_app(config, honour_idempotency=not args.no_idempotency)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, handler_cancellation=True,
                shutdown_timeout=1.0, print=None)  # fmt: skip


if __name__ == "__main__":
    main()
