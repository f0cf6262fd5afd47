"""End-to-end dispatch speed: a running SMS campaign through real arq workers into the HTTP stand-in.

Issue 5's figure. A fresh PostgreSQL database, Redis db 8, the stub (``dispatcher fake-sms``) in its own
process and N worker processes (``dispatcher worker``). The campaign is seeded straight in the database
(paused), the workers are started and given time to boot, then the campaign is flipped to ``running``: the
clock runs from that instant until the stub has recorded N messages and the ledger shows N ``sent``. The
same run's ceiling is the stub driven by a bare aiohttp client (one session, concurrency 50), measured
before and after the campaign. The stub's counters must then show every recipient exactly once.

    .venv/bin/python -m bench.dispatch [--recipients 100000] [--workers 2] [--rate-compare]
    BENCH_PROFILE=/tmp/prof .venv/bin/python -m bench.dispatch   # cProfile each worker into /tmp/prof.<i>
    BENCH_WORKER_WRAPPER=script.py ...   # run workers as ``python script.py worker`` (instrumented)

``--rate-compare`` runs a second campaign with the shared rate limiter on (a rate far above what we reach,
so it only costs its Redis round trip). Frequency caps are always on: they are not optional in the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import sqlalchemy as sa
from redis.asyncio import Redis

from bench.sms_ceiling import bare_client
from dispatcher.settings import Settings
from dispatcher.storage.accounts import WorkerHeartbeat
from dispatcher.storage.campaigns import Campaign, Message
from dispatcher.storage.engine import create_engine
from dispatcher.storage.migrations import upgrade
from tests.pipeline.campaign_setup import seed_campaign

DB = "dispatcher_bench_dispatch"
PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
REDIS = "redis://127.0.0.1:6379/8"
QUEUE = f"dispatcher:bench-dispatch:{os.getpid()}"


@dataclass
class Run:
    label: str
    seed_s: float = 0.0
    boot_s: float = 0.0
    stub_s: float = 0.0
    ledger_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    exact: bool = False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Not in the migrations yet (see the report): the cap-history lookup by address at send time
PROPOSED_INDEXES = [
    "CREATE INDEX IF NOT EXISTS ix_messages_ws_channel_address ON messages (workspace_id, channel, address)",
]


async def fresh_database(proposed_indexes: bool) -> str:
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DB}")
    finally:
        await conn.close()
    url = PG + DB
    await asyncio.to_thread(upgrade, url)
    if proposed_indexes:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}")
        for statement in PROPOSED_INDEXES:
            await conn.execute(statement)
        await conn.close()
    redis = Redis.from_url(REDIS)
    await redis.flushdb()
    await redis.aclose()
    return url


async def _get(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body: dict[str, Any] = await response.json()
        return body


@asynccontextmanager
async def stub_process() -> AsyncIterator[str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher", "fake-sms", "--port", str(port), "--seed", "1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                await _get(url + "/_stub/stats")
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        yield url
    finally:
        await _stop([proc])


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def ceiling(url: str, n: int, run: int) -> float:
    await bare_client(url, min(n, 2000), 50, 1000 + run)  # warm-up: connections, caches
    started = time.perf_counter()
    await bare_client(url, n, 50, run)
    rate = n / (time.perf_counter() - started)
    async with aiohttp.ClientSession() as http:
        await http.post(url + "/_stub/reset")
    return rate


async def start_workers(settings: Settings, count: int) -> list[asyncio.subprocess.Process]:
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url or "",
        DISPATCHER_QUEUE=settings.queue_name,
        DISPATCHER_LOG_LEVEL="WARNING",
    )
    profile, wrapper = os.environ.get("BENCH_PROFILE"), os.environ.get("BENCH_WORKER_WRAPPER")
    procs = []
    for i in range(count):
        prefix = ["-m", "cProfile", "-o", f"{profile}.{i}"] if profile else []
        command = [wrapper] if wrapper else [*prefix, "-m", "dispatcher"]
        procs.append(await asyncio.create_subprocess_exec(sys.executable, *command, "worker", env=env))
    return procs


async def _scalar(engine: Any, query: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(query)


async def wait_for_workers(engine: Any, count: int) -> None:
    for _ in range(600):
        if await _scalar(engine, sa.select(sa.func.count()).select_from(WorkerHeartbeat)) >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("workers did not start")


async def set_state(engine: Any, campaign_id: int, state: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.update(Campaign).where(Campaign.id == campaign_id).values(state=state))


async def wait_until(engine: Any, stub: str, campaign_id: int, n: int, started: float, run: Run) -> None:
    sent = sa.select(sa.func.count()).where(Message.campaign_id == campaign_id, Message.state == "sent")
    deadline = started + max(120.0, n / 200)
    while not run.stub_s and time.perf_counter() < deadline:
        if (await _get(stub + "/_stub/stats")).get("messages", 0) >= n:
            run.stub_s = time.perf_counter() - started
        await asyncio.sleep(0.05)
    while not run.ledger_s and time.perf_counter() < deadline:
        if await _scalar(engine, sent) >= n:
            run.ledger_s = time.perf_counter() - started
        await asyncio.sleep(0.05)
    if not run.ledger_s:
        raise RuntimeError(f"{run.label}: not finished within {deadline - started:.0f} s")


async def phase_notes(engine: Any, campaign_id: int) -> list[str]:
    """When claims and sends happened, read back from the ledger (database clock, so comparable)."""
    m = Message
    query = sa.select(
        sa.func.min(m.queued_at), sa.func.max(m.queued_at), sa.func.min(m.sent_at), sa.func.max(m.sent_at)
    ).where(m.campaign_id == campaign_id)
    async with engine.connect() as conn:
        first_claim, last_claim, first_sent, last_sent = (await conn.execute(query)).one()
    return [
        f"claims spread over {(last_claim - first_claim).total_seconds():.1f} s",
        f"first claim → first sent {(first_sent - first_claim).total_seconds():.2f} s",
        f"first claim → last sent {(last_sent - first_claim).total_seconds():.1f} s",
    ]


async def campaign_run(settings: Settings, stub: str, n: int, workers: int, run: Run) -> None:
    seeding = time.perf_counter()
    limits = {"rate_per_s": 1_000_000} if "rate" in run.label else None
    campaign_id = await seed_campaign(settings, stub, n, limits=limits)
    engine = create_engine(settings.database_url, pool_size=2)
    await set_state(engine, campaign_id, "paused")  # seeded running; nobody claims until workers exist
    async with engine.connect() as conn:  # as autovacuum would after a planning run of this size
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("ANALYZE"))
    run.seed_s = time.perf_counter() - seeding
    procs = await start_workers(settings, workers)
    try:
        booting = time.perf_counter()
        await wait_for_workers(engine, workers)
        run.boot_s = time.perf_counter() - booting
        started = time.perf_counter()
        await set_state(engine, campaign_id, "running")
        await wait_until(engine, stub, campaign_id, n, started, run)
        run.notes = await phase_notes(engine, campaign_id)
    finally:
        await _stop(procs)
    stats = await _get(stub + "/_stub/stats")
    run.exact = stats["messages"] == stats["unique_recipients"] == n == stats["unique_tokens"]
    run.exact = run.exact and stats["recipients_with_duplicates"] == 0
    async with engine.begin() as conn:
        await conn.execute(sa.delete(WorkerHeartbeat))
    await engine.dispose()
    async with aiohttp.ClientSession() as http:
        await http.post(stub + "/_stub/reset")


def report(n: int, workers: int, ceilings: list[float], runs: list[Run]) -> None:
    ceil = statistics.median(ceilings)
    print(f"\ndispatch: {n:,} SMS, PostgreSQL, {workers} worker processes, stub in its own process")
    print(f"  ceiling (bare aiohttp, 1 session, concurrency 50): {', '.join(f'{c:,.0f}' for c in ceilings)}")
    print(f"  ceiling median: {ceil:,.0f} req/s")
    header = (
        f"  {'run':<14}{'seed s':>8}{'boot s':>8}{'→stub s':>9}{'→ledger s':>10}{'msgs/s':>9}{'ratio':>7}"
    )
    print(header + "  exactly-once")
    for run in runs:
        rate = n / run.ledger_s
        print(
            f"  {run.label:<14}{run.seed_s:>8.1f}{run.boot_s:>8.1f}{run.stub_s:>9.2f}{run.ledger_s:>10.2f}"
            f"{rate:>9,.0f}{rate / ceil:>7.2f}  {'yes' if run.exact else 'NO'}"
        )
        for note in run.notes:
            print(f"      {note}")
    print("  msgs/s = N / (start → ledger shows N sent); target ≥ 5,000 and ratio ≥ 0.6")


async def main(args: argparse.Namespace) -> None:
    labels = ["caps", "caps+rate"] if args.rate_compare else ["caps"]
    runs = [Run(label) for label in labels]
    async with stub_process() as stub:
        ceilings = [await ceiling(stub, args.ceiling_n, 0)]
        for run in runs:  # each on a fresh database and Redis, so caps and ledgers start empty
            url = await fresh_database(args.proposed_indexes)
            settings = Settings(database_url=url, redis_url=REDIS, secret_key="bench", queue_name=QUEUE)
            await campaign_run(settings, stub, args.recipients, args.workers, run)
            print(f"  {run.label}: {args.recipients / run.ledger_s:,.0f} msgs/s", flush=True)
        ceilings.append(await ceiling(stub, args.ceiling_n, 1))
    report(args.recipients, args.workers, ceilings, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ceiling-n", type=int, default=20_000)
    parser.add_argument("--rate-compare", action="store_true")
    parser.add_argument("--proposed-indexes", action="store_true", help="add indexes not yet migrated")
    asyncio.run(main(parser.parse_args()))
