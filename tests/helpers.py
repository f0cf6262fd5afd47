"""Test helpers shared across packages: run a real arq worker until the queue is empty."""

from __future__ import annotations

from dispatcher.pipeline.worker import build_worker
from dispatcher.settings import Settings


async def drain(settings: Settings) -> int:
    """A real arq worker in burst mode: runs every queued job, then stops. Returns jobs completed."""
    worker = build_worker(settings, settings.redis_url or "", burst=True)
    worker.poll_delay_s = 0.05  # a burst worker sleeps this long between looks at the queue (arq: 0.5 s)
    try:
        await worker.main()
    finally:
        await worker.close()
    return int(worker.jobs_complete)
