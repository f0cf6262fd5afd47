"""The arq worker: resources on start-up, heartbeat cron, and a shutdown that lets running jobs finish.

On SIGTERM arq stops taking jobs and waits up to ``worker_shutdown_wait_s`` for running ones
(``job_completion_wait``); a job still running then is cancelled and re-queued by arq, and the ledger's
leases make its re-run harmless. On SIGKILL nothing runs here: the sweeper and leases recover the work.

A Redis restart must not end the process: arq's poll loop lets the first connection error escape and the
worker exits, leaving nobody to run the sweeper that recovers the forgotten jobs (bench/faults.py,
scenario ``redis``). :class:`_Worker` waits for Redis instead and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from arq import Worker, cron
from arq.worker import func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from dispatcher.logs import get_logger
from dispatcher.loops import settle_gc
from dispatcher.pipeline.cap_seeding import request_cap_seed, seed_caps
from dispatcher.pipeline.context import Clock, WorkerResources, attach, resources, utc_now
from dispatcher.pipeline.dispatch import dispatch_tick, sweep_ledger
from dispatcher.pipeline.imports import IMPORT_TIMEOUT_S, run_import, sweep_imports
from dispatcher.pipeline.maintenance import apply_early_receipts, housekeeping
from dispatcher.pipeline.planning import PLAN_TIMEOUT_S, plan_campaign, release_pilots, sweep_planning
from dispatcher.pipeline.queue import ensure_safe_policy, redis_settings
from dispatcher.pipeline.sending import send_chunk
from dispatcher.settings import Settings
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.workers import forget_worker, record_heartbeat

log = get_logger(__name__)
HEARTBEAT_EVERY_S = 5.0
# redis-py reports a connection lost under WATCH as a WatchError
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, WatchError)
REDIS_RETRY_S = 1.0
POLL_DELAY_S = 0.05
ELSEWHERE_S = 1.0
ELSEWHERE_MAX = 10_000


async def heartbeat(res: WorkerResources) -> None:
    async with res.sessions.begin() as session:
        await record_heartbeat(
            session,
            worker_id=res.worker_id,
            host=res.host,
            pid=res.pid,
            jobs_done=res.jobs_done,
            now=datetime.now(UTC),
        )


async def _beat_forever(res: WorkerResources) -> None:
    # In-process, not an arq cron job: a cron job may run on any worker and would report the wrong one.
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY_S)
        try:
            await heartbeat(res)
        except Exception as exc:  # a database blip must not kill the heartbeat loop
            log.warning("worker.heartbeat_failed", error=type(exc).__name__)


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    await ensure_safe_policy(ctx["redis"])
    engine = create_engine(settings.database_url, pool_size=5)
    res = WorkerResources(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        http=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)),
        worker_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
        host=socket.gethostname(),
        pid=os.getpid(),
        clock=ctx.get("clock") or utc_now,
    )
    attach(ctx, res)
    await heartbeat(res)
    res.extra["heartbeat"] = asyncio.create_task(_beat_forever(res))
    if not ctx.get("burst"):  # a long-lived worker; one-off drains leave it to the sweeper
        await request_cap_seed(ctx["redis"], settings.queue_name)
        settle_gc()
    log.info("worker.started", worker_id=res.worker_id, queue=settings.queue_name)


async def _shutdown(ctx: dict[str, Any]) -> None:
    res = resources(ctx)
    task = res.extra.pop("heartbeat", None)
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    async with res.sessions.begin() as session:
        await forget_worker(session, res.worker_id)
    if res.cleaner is not None:
        res.cleaner.close()
    pool = res.extra.pop("channel_pool", None)
    if pool is not None:  # SMTP pools and SMPP binds say goodbye before the HTTP session goes
        await pool.close()
    await res.http.close()
    await res.engine.dispose()
    log.info("worker.stopped", worker_id=res.worker_id, jobs_done=res.jobs_done)


async def _job_end(ctx: dict[str, Any]) -> None:
    resources(ctx).jobs_done += 1


CRON_JOBS = [
    cron(housekeeping, name="cron:housekeeping", minute={7, 37}, second=0, unique=True),
    cron(apply_early_receipts, name="cron:apply_early_receipts", second={2, 17, 32, 47}, unique=True),
    cron(sweep_imports, name="cron:sweep_imports", second=30, unique=True),
    cron(dispatch_tick, name="cron:dispatch_tick", second=set(range(60)), unique=True, timeout=60),
    cron(sweep_ledger, name="cron:sweep_ledger", second={5, 20, 35, 50}, unique=True),
    cron(release_pilots, name="cron:release_pilots", second={10, 40}, unique=True),
    cron(sweep_planning, name="cron:sweep_planning", second=45, unique=True),
]


class _Worker(Worker):
    """arq's worker (0.28), kept alive while Redis is away: the running jobs go on with the database, the
    poll loop waits and reconnects (redis-py's pool does that on the next command)."""

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_DOWN as exc:
            if self.burst:
                raise
            log.warning("worker.redis_unavailable", error=type(exc).__name__)
            await asyncio.sleep(REDIS_RETRY_S)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._elsewhere: dict[str, float] = {}  # job id -> until when another worker is taken to run it

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq takes a job slot (semaphore + counter) before its Redis round trips and gives it back on every
        # path but an exception: one id at a time, a failure returns exactly the one slot it took, or a few
        # restarts would leave the worker with no slots at all.
        # The queue lists running jobs first, and arq spends three Redis round trips on each to find it
        # running, at every look (every 50 ms) while a slot is free: 5% of a worker's CPU in a campaign.
        # So a job this worker runs is skipped outright, and one found running elsewhere for a second.
        now = time.monotonic()
        if len(self._elsewhere) > ELSEWHERE_MAX:
            self._elsewhere = {job: until for job, until in self._elsewhere.items() if until > now}
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return
            name = job_id.decode()
            if name in self.tasks or self._elsewhere.get(name, 0.0) > now:
                continue
            try:
                await super().start_jobs([job_id])
            except REDIS_DOWN:
                self.job_counter -= 1
                self.sem.release()
                raise
            if name not in self.tasks:
                self._elsewhere[name] = now + ELSEWHERE_S


def build_worker(
    settings: Settings, redis_url: str, *, burst: bool = False, clock: Clock | None = None
) -> Worker:
    """``clock`` replaces the real time in the jobs' scheduling decisions (tests, simulations)."""
    return _Worker(
        functions=[
            func(housekeeping, name="housekeeping"),
            func(apply_early_receipts, name="apply_early_receipts"),
            func(run_import, name="run_import", timeout=IMPORT_TIMEOUT_S, max_tries=1000),
            func(sweep_imports, name="sweep_imports"),
            func(plan_campaign, name="plan_campaign", timeout=PLAN_TIMEOUT_S, max_tries=1000),
            func(release_pilots, name="release_pilots"),
            func(sweep_planning, name="sweep_planning"),
            func(send_chunk, name="send_chunk", max_tries=1000),
            func(seed_caps, name="seed_caps", timeout=3600),
            func(dispatch_tick, name="dispatch_tick"),
            func(sweep_ledger, name="sweep_ledger"),
        ],
        # a burst worker (tests, one-off drains) runs what is queued and stops; crons would keep it alive
        cron_jobs=[] if burst else CRON_JOBS,
        queue_name=settings.queue_name,
        redis_settings=redis_settings(redis_url),
        on_startup=_startup,
        on_shutdown=_shutdown,
        after_job_end=_job_end,
        ctx={"settings": settings, "clock": clock, "burst": burst},
        max_jobs=settings.worker_max_jobs,
        # arq looks for new jobs only every poll_delay (0.5 s by default). A worker's send chunks tend to
        # finish together, and until the next look it has nothing to run: at 0.5 s that idled the worker
        # for several per cent of a campaign. A look is one cheap ZRANGEBYSCORE.
        poll_delay=POLL_DELAY_S,
        job_timeout=settings.worker_job_timeout_s,
        job_completion_wait=settings.worker_shutdown_wait_s,
        keep_result=3600,
        burst=burst,
        handle_signals=not burst,
    )
