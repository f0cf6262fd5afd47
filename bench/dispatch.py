"""End-to-end dispatch speed: running campaigns through real arq workers into the local stand-ins.

Issues 5 and 6's figures. For each channel, a fresh PostgreSQL database, Redis db 8, the stand-in in its own
process (bench/_dispatch_targets.py) and N worker processes (``dispatcher worker``):

- ``sms``: 100,000 SMS to the Twilio-style HTTP stub (target ≥ 5,000/s and ≥ 0.6 of the ceiling);
- ``email``: 20,000 e-mails to the SMTP sink (target ≥ 1,500/s);
- ``smpp``: 50,000 SMS over SMPP to the smpp34 simulator (target ≥ 2,500/s).

The campaign is seeded straight in the database (paused), the workers are started and given time to boot,
then the campaign is flipped to ``running`` and the dispatcher woken, as the resume endpoint does (else the
first claim waits for the once-a-second tick): the clock runs from that instant until the stand-in has
received N messages and the ledger shows N ``sent``. The same run's ceiling (the stand-in driven by a bare
client, no dispatcher code) is measured before and after the campaign, over as many messages: a shorter
ceiling samples a few seconds of a shared machine whose speed drifts by tens of percent within minutes.
The stand-in's counters must then show every recipient exactly once.

    .venv/bin/python -m bench.dispatch [--channel sms|email|smpp|all] [--recipients N] [--workers 2]
                                       [--rate-compare] [--stub-callbacks] [--timeline]
    BENCH_PROFILE=/tmp/prof .venv/bin/python -m bench.dispatch   # cProfile each worker into /tmp/prof.<i>
    BENCH_WORKER_WRAPPER=script.py ...   # run workers as ``python script.py worker`` (instrumented)

``--rate-compare`` runs a second campaign with the shared rate limiter on (a rate far above what we reach,
so it only costs its Redis round trip). Frequency caps are always on: they are not optional in the engine.
The HTTP stub defers its status callbacks past the run (see ``CALLBACKS_LATER_S``); ``--stub-callbacks``
runs ``dispatcher fake-sms`` as it is, posting them (to a closed port) while the campaign runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from redis.asyncio import Redis

from bench._dispatch_targets import Counts, Target, serve_stub, target
from dispatcher.pipeline.queue import connect_queue, wake_dispatcher
from dispatcher.settings import Settings
from dispatcher.storage.accounts import WorkerHeartbeat
from dispatcher.storage.campaigns import Campaign, Message
from dispatcher.storage.engine import create_engine
from dispatcher.storage.migrations import upgrade
from tests.pipeline.campaign_setup import seed_channel_campaign

DB = "dispatcher_bench_dispatch"
PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
REDIS = "redis://127.0.0.1:6379/8"
QUEUE = f"dispatcher:bench-dispatch:{os.getpid()}"
TIMELINE_EVERY_S = 0.5
DEFAULT_N = {"sms": 100_000, "email": 20_000, "smpp": 50_000}
TARGETS = {"sms": 5_000, "email": 1_500, "smpp": 2_500}


@dataclass
class Run:
    label: str
    seed_s: float = 0.0
    boot_s: float = 0.0
    sink_s: float = 0.0
    ledger_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    exact: bool = False
    timeline: bool = False


async def fresh_database() -> str:
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DB}")
    finally:
        await conn.close()
    url = PG + DB
    await asyncio.to_thread(upgrade, url)
    redis = Redis.from_url(REDIS)
    await redis.flushdb()
    await redis.aclose()
    return url


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


async def start_workers(settings: Settings, count: int, channel: str) -> list[asyncio.subprocess.Process]:
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
        prefix = ["-m", "cProfile", "-o", f"{profile}.{channel}.{i}"] if profile else []
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


async def wait_until(
    engine: Any, sink: Target, before: Counts, campaign_id: int, n: int, started: float, run: Run
) -> None:
    sent = sa.select(sa.func.count()).where(Message.campaign_id == campaign_id, Message.state == "sent")
    deadline = started + max(120.0, n / 200)
    while not run.sink_s and time.perf_counter() < deadline:
        if (await sink.counts())[0] - before[0] >= n:
            run.sink_s = time.perf_counter() - started
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


def _ticks(parts: dict[str, list[int]]) -> dict[int, int]:
    """CPU ticks of every process of every part, by pid."""
    return {pid: _cpu_ticks(pid) for pids in parts.values() for pid in pids}


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine since boot."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if entry.isdigit() and comm.read().strip() == name:
                    found.append(int(entry))
        except OSError:
            continue
    return found


class CpuMeter:
    """CPU seconds each part of the system spent in the measured window: the workers, the stand-in, this
    database's PostgreSQL backends and the Redis server (shared: anything else using Redis counts too).
    Per message, these say where the time goes whatever else loads the machine."""

    def __init__(self, engine: Any, parts: dict[str, list[int]]) -> None:
        self.engine, self.parts, self.start, self.spent = engine, parts, {}, {}  # type: ignore[var-annotated]

    async def _pids(self) -> dict[str, list[int]]:
        query = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()")
        async with self.engine.connect() as conn:
            backends = [int(pid) for pid in (await conn.execute(query, {"db": DB})).scalars()]
        return {**self.parts, "postgres": backends, "redis": _pids_named("redis-server")}

    async def begin(self) -> None:
        self.start = _ticks(await self._pids())

    async def end(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for part, pids in (await self._pids()).items():
            self.spent[part] = sum(_cpu_ticks(pid) - self.start.get(pid, 0) for pid in pids) / tick

    async def timeline(self, sink: Target, before: int, every: float, rows: list[str]) -> None:
        """Every ``every`` s: the machine's busy share, each part's share of one core, messages received.
        Shows where the machine idles (start, waves, tail) when the per-message figures cannot."""
        tick = os.sysconf("SC_CLK_TCK")
        cores = os.cpu_count() or 1
        started = time.perf_counter()
        last_busy, last_total = _machine_ticks()
        last = _ticks(await self._pids())
        while True:
            await asyncio.sleep(every)
            busy, total = _machine_ticks()
            parts = await self._pids()
            now = _ticks(parts)
            shares = [
                sum(now[pid] - last.get(pid, now[pid]) for pid in pids) / tick / every * 100
                for pids in parts.values()
            ]
            machine = (busy - last_busy) / max(1, total - last_total) * 100
            received = (await sink.counts())[0] - before
            elapsed = time.perf_counter() - started
            rows.append(
                f"{elapsed:6.1f} {machine:5.0f}% of {cores} | "
                + " ".join(f"{v:4.0f}" for v in shares)
                + f" | {received:,}"
            )
            last_busy, last_total, last = busy, total, now

    def note(self, n: int) -> str:
        shares = ", ".join(f"{part} {seconds / n * 1e6:,.0f}" for part, seconds in self.spent.items())
        return f"CPU µs per message: {shares} (total {sum(self.spent.values()) / n * 1e6:,.0f})"


async def campaign_run(settings: Settings, sink: Target, n: int, workers: int, run: Run) -> None:
    seeding = time.perf_counter()
    limits = {"rate_per_s": 1_000_000} if "rate" in run.label else None
    campaign_id = await seed_channel_campaign(
        settings, n, kind=sink.kind, config=sink.config, sender=sink.sender, limits=limits
    )
    engine = create_engine(settings.database_url, pool_size=2)
    await set_state(engine, campaign_id, "paused")  # seeded running; nobody claims until workers exist
    async with engine.connect() as conn:  # as autovacuum would after a planning run of this size
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("ANALYZE"))
    run.seed_s = time.perf_counter() - seeding
    before = await sink.counts()
    procs = await start_workers(settings, workers, sink.channel)
    try:
        booting = time.perf_counter()
        await wait_for_workers(engine, workers)
        run.boot_s = time.perf_counter() - booting
        cpu = CpuMeter(engine, {"workers": [p.pid for p in procs], "stand-in": sink.pids})
        queue_pool = await connect_queue(REDIS, check_policy=False)
        await cpu.begin()
        rows: list[str] = []
        sampler = (
            asyncio.create_task(cpu.timeline(sink, before[0], TIMELINE_EVERY_S, rows))
            if run.timeline
            else None
        )
        started = time.perf_counter()
        await set_state(engine, campaign_id, "running")
        await wake_dispatcher(queue_pool, QUEUE)  # as the resume endpoint does
        await queue_pool.aclose()
        await wait_until(engine, sink, before, campaign_id, n, started, run)
        await cpu.end()
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        run.notes = [*await phase_notes(engine, campaign_id), cpu.note(n)]
        if rows:
            run.notes += [
                "timeline:   s  machine    | workers stand-in postgres redis (% of a core) | received",
                *rows,
            ]
    finally:
        await _stop(procs)
    after = await sink.counts()
    run.exact = after[0] - before[0] == n == after[1] - before[1] and after[2] == before[2]
    async with engine.begin() as conn:
        await conn.execute(sa.delete(WorkerHeartbeat))
    await engine.dispose()


def report(sink: Target, n: int, workers: int, ceilings: list[float], runs: list[Run]) -> None:
    ceil = statistics.median(ceilings)
    print(f"\ndispatch {sink.channel}: {n:,} messages, PostgreSQL, {workers} worker processes")
    print(f"  ceiling ({sink.ceiling_label}): {', '.join(f'{c:,.0f}' for c in ceilings)}")
    print(f"  ceiling median: {ceil:,.0f} messages/s")
    header = (
        f"  {'run':<14}{'seed s':>8}{'boot s':>8}{'→sink s':>9}{'→ledger s':>10}{'msgs/s':>9}{'ratio':>7}"
    )
    print(header + "  exactly-once")
    for run in runs:
        rate = n / run.ledger_s
        print(
            f"  {run.label:<14}{run.seed_s:>8.1f}{run.boot_s:>8.1f}{run.sink_s:>9.2f}{run.ledger_s:>10.2f}"
            f"{rate:>9,.0f}{rate / ceil:>7.2f}  {'yes' if run.exact else 'NO'}"
        )
        for note in run.notes:
            print(f"      {note}")
    goal = f"target ≥ {TARGETS[sink.channel]:,}" + (" and ratio ≥ 0.6" if sink.channel == "sms" else "")
    print(f"  msgs/s = N / (start → ledger shows N sent); {goal}", flush=True)


async def bench_channel(channel: str, args: argparse.Namespace) -> None:
    n = args.recipients or DEFAULT_N[channel]
    labels = ["caps", "caps+rate"] if args.rate_compare else ["caps"]
    runs = [Run(label, timeline=args.timeline) for label in labels]
    async with target(channel, stub_callbacks=args.stub_callbacks) as sink:
        ceiling_n = args.ceiling_n or n
        ceilings = [await sink.ceiling(ceiling_n, 0)]
        for run in runs:  # each on a fresh database and Redis, so caps and ledgers start empty
            url = await fresh_database()
            settings = Settings(database_url=url, redis_url=REDIS, secret_key="bench", queue_name=QUEUE)
            await campaign_run(settings, sink, n, args.workers, run)
            print(f"  {channel} {run.label}: {n / run.ledger_s:,.0f} msgs/s", flush=True)
        ceilings.append(await sink.ceiling(ceiling_n, 1))
    report(sink, n, args.workers, ceilings, runs)


async def main(args: argparse.Namespace) -> None:
    for channel in ["sms", "email", "smpp"] if args.channel == "all" else [args.channel]:
        await bench_channel(channel, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--channel", choices=["sms", "email", "smpp", "all"], default="sms")
    parser.add_argument("--recipients", type=int, help="default: sms 100,000, email 20,000, smpp 50,000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ceiling-n", type=int, help="messages per ceiling run (default: N)")
    parser.add_argument("--rate-compare", action="store_true")
    parser.add_argument("--stub-callbacks", action="store_true", help="stub posts callbacks as it goes")
    parser.add_argument("--timeline", action="store_true", help="CPU use of each part every 0.5 s")
    parser.add_argument("--serve-stub", type=int, help=argparse.SUPPRESS)  # the stub's own process
    arguments = parser.parse_args()
    if arguments.serve_stub:
        serve_stub(arguments.serve_stub)
    else:
        asyncio.run(main(arguments))
