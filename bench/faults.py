"""Fault injection under a running SMS campaign: kills, restarts, dropped connections, a misbehaving provider.

Issue 8's table. Each scenario runs on a fresh PostgreSQL database (``dispatcher_bench_faults``), its own
``redis-server`` on a free port (never the shared one: scenario ``redis`` kills it), the logging SMS stand-in
(``tests/pipeline/fault_tools.py``: ``dispatcher fake-sms`` plus a log of every attempt) in its own process
and ``--workers`` ``dispatcher worker`` processes. The campaign is seeded paused, the workers booted, then it
is set running; the faults are injected at fixed shares of progress (messages recorded by the stand-in).

A row counts: messages the ledger shows ``sent``; lost = recipients the stand-in never received; duplicates =
copies beyond the first at the stand-in; seconds from start to ``completed``. All along, a watch reads the
campaign state and its pending rows in one statement: ``completed`` seen while anything is pending is a
failure (``premature``).

    .venv/bin/python -m bench.faults [--recipients 50000] [--workers 2] [--only sigkill] [--lease 20]

Scenarios: sigkill (5 × SIGKILL of a random worker, a new one started), sigterm (rolling restarts of every
worker, 3 rounds), redis (3 restarts of Redis, no persistence), pgkill (pg_terminate_backend of every
connection to the database, 4 times), provider (20% 429 with Retry-After, 20% 503, 5% timeouts after the
provider accepted), provider-noidem (the same, the provider ignoring idempotency keys, campaign
``duplicate_policy=resend``: duplicates must all be flagged ``possible_duplicate`` in the ledger).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine
from dispatcher.storage.migrations import upgrade
from tests.pipeline import fault_tools as ft
from tests.pipeline.campaign_setup import seed_campaign

DB = "dispatcher_bench_faults"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PROVIDER_FAULTS = ["--rate-429", "0.2", "--rate-5xx", "0.2", "--rate-timeout", "0.05"]


@dataclass
class Stage:
    """What a fault driver acts on."""

    settings: Settings
    engine: AsyncEngine
    stub: str
    redis: ft.PrivateRedis
    workers: list[asyncio.subprocess.Process]
    n: int
    log: Path
    injected: list[str] = field(default_factory=list)

    async def progress(self) -> int:
        return int((await ft.stub_stats(self.stub)).get("messages", 0))

    async def reach(self, share: float) -> bool:
        """Wait until the stand-in holds ``share`` of the campaign; False when it is done already."""
        while True:
            done = await self.progress()
            if done >= share * self.n:
                return done < self.n
            await asyncio.sleep(0.05)

    async def replace(self, index: int, sig: int) -> None:
        await ft.stop(self.workers[index], sig)
        self.workers[index] = await ft.start_worker(self.settings, self.log)
        await ft.wait_for_heartbeat(self.engine, self.workers[index].pid)


Driver = Callable[[Stage], Coroutine[Any, Any, None]]


async def sigkill(stage: Stage) -> None:
    for i in range(5):
        if await stage.reach((i + 1) / 7):
            index = random.randrange(len(stage.workers))
            stage.injected.append(f"kill@{await stage.progress()}")
            await stage.replace(index, signal.SIGKILL)


async def sigterm(stage: Stage) -> None:
    for i in range(3):
        if await stage.reach((i + 1) / 5):
            stage.injected.append(f"round@{await stage.progress()}")
            for index in range(len(stage.workers)):
                await stage.replace(index, signal.SIGTERM)


async def redis_restarts(stage: Stage) -> None:
    for i in range(3):
        if await stage.reach((i + 1) / 5):
            stage.injected.append(f"restart@{await stage.progress()}")
            await stage.redis.restart(down_for=1.0)


async def pg_kills(stage: Stage) -> None:
    for i in range(4):
        if await stage.reach((i + 1) / 6):
            conn = await asyncpg.connect(ADMIN)
            try:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    DB,
                )
            finally:
                await conn.close()
            stage.injected.append(f"{killed} conns@{await stage.progress()}")
            await asyncio.sleep(1.0)


async def nothing(stage: Stage) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    driver: Driver
    stub_args: tuple[str, ...] = ()
    no_idempotency: bool = False


SCENARIOS = [
    Scenario("sigkill", sigkill),
    Scenario("sigterm", sigterm),
    Scenario("redis", redis_restarts),
    Scenario("pgkill", pg_kills),
    Scenario("provider", nothing, tuple(PROVIDER_FAULTS)),
    Scenario("provider-noidem", nothing, (*PROVIDER_FAULTS, "--no-idempotency"), no_idempotency=True),
]


@dataclass
class Row:
    name: str
    n: int
    sent: int = 0
    lost: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    ok: bool = False
    notes: list[str] = field(default_factory=list)


async def fresh_database() -> str:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DB}")
    finally:
        await conn.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB}"
    await asyncio.to_thread(upgrade, url)
    return url


async def start_stub(args: tuple[str, ...]) -> tuple[asyncio.subprocess.Process, str]:
    port = ft.free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.pipeline.fault_tools", "--port", str(port), *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            await ft.stub_stats(url)
            return proc, url
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the stand-in did not start")


async def prepare(scenario: Scenario, stage: Stage, campaign_id: int) -> None:
    """Seeded running: pause it until the workers are up, and give the planner statistics."""
    async with stage.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE campaigns SET state = 'paused' WHERE id = :c"), {"c": campaign_id})
        if scenario.no_idempotency:
            await conn.execute(
                sa.text("UPDATE campaigns SET duplicate_policy = 'resend' WHERE id = :c"), {"c": campaign_id}
            )
    if scenario.no_idempotency:
        await ft.set_provider(stage.engine, campaign_id, idempotency=False)
    async with stage.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("ANALYZE"))


async def run(scenario: Scenario, args: argparse.Namespace) -> Row:
    row = Row(scenario.name, args.recipients)
    redis = ft.PrivateRedis()
    await redis.start()
    stub_proc, stub = await start_stub(scenario.stub_args)
    try:
        settings = Settings(
            database_url=await fresh_database(), redis_url=redis.url(), secret_key="bench",
            queue_name=f"dispatcher:bench-faults:{os.getpid()}", send_lease_s=args.lease,
            queue_lease_s=args.lease, worker_shutdown_wait_s=20, worker_max_jobs=args.max_jobs,
        )  # fmt: skip
        limits = {"max_attempts": args.max_attempts} if args.max_attempts else None
        campaign_id = await seed_campaign(settings, stub, args.recipients, limits=limits)
        engine = create_engine(settings.database_url, pool_size=2)
        log = Path(tempfile.gettempdir()) / f"bench-faults-{os.getpid()}-{scenario.name}.log"
        stage = Stage(settings, engine, stub, redis, [], args.recipients, log)
        try:
            await prepare(scenario, stage, campaign_id)
            await campaign(scenario, stage, campaign_id, row, args)
        finally:
            for proc in stage.workers:
                await ft.stop(proc)
        await tally(stage, campaign_id, row)
        await engine.dispose()
    finally:
        await ft.stop(stub_proc)
        await redis.kill()
    return row


async def campaign(
    scenario: Scenario, stage: Stage, campaign_id: int, row: Row, args: argparse.Namespace
) -> None:
    for _ in range(args.workers):
        stage.workers.append(await ft.start_worker(stage.settings, stage.log))
    for proc in stage.workers:
        await ft.wait_for_heartbeat(stage.engine, proc.pid)
    watch = ft.Watch(stage.engine, campaign_id)
    started = time.perf_counter()
    async with stage.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE campaigns SET state = 'running' WHERE id = :c"), {"c": campaign_id}
        )
    driver = asyncio.create_task(scenario.driver(stage))
    done = await watch.until_done(timeout=args.timeout)
    row.seconds = time.perf_counter() - started
    if not driver.done():
        row.notes.append("faults not all injected")
        driver.cancel()
    elif driver.exception() is not None:
        row.notes.append(f"driver failed: {driver.exception()!r}")
    if not done:
        row.notes.append(
            f"NOT completed after {args.timeout:.0f} s (state {watch.state}, {watch.pending} pending)"
        )
    row.notes.append(f"faults: {', '.join(stage.injected) or 'provider'}")
    row.notes.append(
        f"watch: {watch.looks} looks, premature completed {watch.premature}, db errors {watch.errors}"
    )
    died = sum(proc.returncode is not None for proc in stage.workers)  # the ones not stopped on purpose
    row.notes.append(f"workers that died by themselves: {died}")
    row.ok = done and watch.premature == 0 and died == 0


async def tally(stage: Stage, campaign_id: int, row: Row) -> None:
    stats = await ft.stub_stats(stage.stub)
    states, flagged = await ft.ledger_summary(stage.engine, campaign_id)
    seen, twice = await ft.recipients(stage.stub)
    row.sent = states.get("sent", 0)
    row.lost = row.n - len(seen)
    row.duplicates = int(stats["messages"]) - len(seen)
    for (state, code), addresses in (await ft.unsent(stage.engine, campaign_id)).items():
        row.notes.append(
            f"ledger {state}/{code}: {len(addresses)}, of which received {len(addresses & seen)}"
        )
    row.notes.append(
        f"stub: {stats.get('requests', 0)} requests, {stats.get('deduplicated', 0)} deduplicated"
    )
    row.notes.append(worker_log_summary(stage.log))
    check = ft.check_retry_after(await ft.stub_attempts(stage.stub))
    if check.refused:
        margin = "-" if check.min_margin_s is None else f"{check.min_margin_s:+.3f} s"
        row.notes.append(
            f"Retry-After: {check.refused} refusals, {check.retried} retried, {check.early} early, "
            f"min margin {margin}"
        )
    row.notes.append(f"possible_duplicate rows {len(flagged)}, duplicated recipients {len(twice)}"
                     f", of them unflagged {len(twice - flagged)}")  # fmt: skip
    row.ok = row.ok and row.lost == 0 and row.sent == row.n and check.early == 0 and not twice - flagged
    if not scenario_allows_duplicates(row.name):
        row.ok = row.ok and row.duplicates == 0


def worker_log_summary(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    counts = {word: text.count(word) for word in ("Traceback", "deadlock detected", "leases_released")}
    return f"worker log {log}: " + ", ".join(f"{word} ×{n}" for word, n in counts.items())


def scenario_allows_duplicates(name: str) -> bool:
    return name == "provider-noidem"


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\nfaults: {args.recipients:,} SMS per scenario, {args.workers} workers × {args.max_jobs} jobs, "
          f"leases {args.lease} s, "
          f"PostgreSQL + private redis-server, stand-in in its own process")  # fmt: skip
    print(f"  {'scenario':<17}{'messages':>9}{'lost':>6}{'dups':>6}{'seconds':>9}  ok")
    for row in rows:
        print(f"  {row.name:<17}{row.sent:>9,}{row.lost:>6}{row.duplicates:>6}{row.seconds:>9.1f}  "
              f"{'yes' if row.ok else 'NO'}")  # fmt: skip
        for note in row.notes:
            print(f"      {note}")


async def cancellable(work: Coroutine[Any, Any, None]) -> None:
    """SIGTERM cancels the run, so its ``finally`` blocks stop the workers, the stand-in and Redis."""
    task = asyncio.ensure_future(work)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await task


async def main(args: argparse.Namespace) -> None:
    if not ft.PrivateRedis.available():
        raise SystemExit("redis-server is not installed: the scenarios need a Redis of their own")
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    rows = []
    for scenario in chosen:
        rows.append(await run(scenario, args))
        print(
            f"  {scenario.name}: {'ok' if rows[-1].ok else 'FAILED'} in {rows[-1].seconds:.1f} s", flush=True
        )
        for note in rows[-1].notes:
            print(f"      {note}", flush=True)
    report(rows, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--lease", type=int, default=60, help="send and queue leases of the workers (s)")
    parser.add_argument("--max-jobs", type=int, default=10, help="jobs at a time per worker")
    parser.add_argument("--max-attempts", type=int, default=0, help="max_attempts (0: default 10)")
    parser.add_argument("--timeout", type=float, default=900.0)
    asyncio.run(cancellable(main(parser.parse_args())))
