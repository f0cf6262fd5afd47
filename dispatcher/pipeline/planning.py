"""The planning job: freeze a started campaign's audience into the send ledger, then let it run.

Pages of :data:`PAGE_SIZE` contacts are read by keyset on ``contacts.id``, placed by
:class:`dispatcher.core.allocation.AudiencePlanner` (address, variant, pilot, first send instant in the
recipient's local windows) and written with one batched ``INSERT … ON CONFLICT DO NOTHING`` per page, each
page in its own transaction. A crash anywhere leaves the campaign ``scheduled`` with some pages written;
the re-run (arq retry, or :func:`sweep_planning` after Redis lost the job) writes the same pages again,
which changes nothing, and finishes. Only after the last page does a guarded UPDATE move the campaign from
``scheduled`` to ``running``, so the dispatcher never sees a half-planned audience.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from dispatcher.core.allocation import (
    NO_WINDOW,
    AudiencePlanner,
    CampaignShape,
    Placement,
    Recipient,
    address_for,
    weights_of,
)
from dispatcher.core.windows import parse_window, parse_windows
from dispatcher.logs import get_logger
from dispatcher.pipeline.context import WorkerResources, queue, resources
from dispatcher.pipeline.queue import job_id
from dispatcher.pipeline.runtime import zone_anchor
from dispatcher.storage import audience
from dispatcher.storage import campaigns_q as store
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.contacts import ContactList, Segment

log = get_logger(__name__)
PAGE_SIZE = 5000
WRITES_IN_FLIGHT = 2
PLAN_TIMEOUT_S = 3600
STUCK_AFTER = timedelta(minutes=2)
PILOT_SEQ, MAIN_SEQ = 1, 2
_ERROR_OF = {"expired": NO_WINDOW, "suppressed": "suppressed"}


def plan_job_id(campaign_id: int) -> str:
    return job_id("plan", campaign_id)


@dataclass(frozen=True, slots=True)
class Setup:
    campaign_id: int
    workspace_id: int
    channel: str
    where: ColumnElement[bool]
    planner: AudiencePlanner
    batch_ids: dict[int, int]
    pilot: bool


async def plan_campaign(ctx: dict[str, Any], campaign_id: int) -> dict[str, int]:
    res = resources(ctx)
    now = res.clock()
    async with res.sessions.begin() as session:
        campaign = await store.load_campaign(session, campaign_id)
        if campaign is None or campaign.state != "scheduled":
            return {"skipped": 1}
        setup = await _setup(session, campaign, now)
    tally = await _write_pages(res, setup, now)
    async with res.sessions.begin() as session:
        running = await _finish(session, campaign, tally, now)
    log.info("campaign.planned", campaign_id=campaign_id, running=running, **tally)
    return {**tally, "running": int(running)}


def shape_of(campaign: Campaign, default_zone: str | None, now: datetime) -> CampaignShape:
    """The campaign as the pure planner sees it; sending may start at the later of now and start_at."""
    schedule = campaign.schedule
    start_at = schedule.get("start_at")
    start = max(now, datetime.fromisoformat(start_at)) if start_at else now
    end_at = schedule.get("end_at")
    end = datetime.fromisoformat(end_at) if end_at else start + timedelta(days=7)
    return CampaignShape(
        campaign_id=campaign.id,
        channel=campaign.channel,
        weights=weights_of(campaign.variants),
        pilot_percent=campaign.pilot_percent,
        windows=parse_windows(schedule["windows"]),
        allowed=parse_window(schedule["allowed"]),
        start=start,
        end=end,
        list_zone=default_zone,
        zones_at=zone_anchor(campaign, now),
    )


async def audience_of(session: AsyncSession, campaign: Campaign, now: datetime) -> ColumnElement[bool]:
    segment = await session.get(Segment, campaign.segment_id) if campaign.segment_id else None
    return audience.audience_condition(
        campaign.workspace_id,
        campaign.list_id,
        segment_filter=segment.filter if segment is not None else None,
        max_id=campaign.audience_max_id,
        now=now,
    )


async def _setup(session: AsyncSession, campaign: Campaign, now: datetime) -> Setup:
    contact_list = await session.get(ContactList, campaign.list_id)
    shape = shape_of(campaign, contact_list.default_timezone if contact_list else None, now)
    if campaign.zones_at is None:  # a re-run (sweep_planning) keeps the first run's, as the pages written do
        await store.set_fields(session, campaign.id, zones_at=shape.zones_at)
    pilot = campaign.pilot_percent is not None
    specs = [{"seq": PILOT_SEQ, "kind": "pilot" if pilot else "main", "state": "released"}]
    if pilot:
        specs.append({"seq": MAIN_SEQ, "kind": "main", "state": "held"})
    batch_ids = await store.ensure_batches(session, campaign, specs, now=now)
    return Setup(
        campaign_id=campaign.id,
        workspace_id=campaign.workspace_id,
        channel=campaign.channel,
        where=await audience_of(session, campaign, now),
        planner=AudiencePlanner(shape),
        batch_ids=batch_ids,
        pilot=pilot,
    )


async def _write_pages(res: WorkerResources, setup: Setup, now: datetime) -> Counter[str]:
    """Read and place the next page while earlier ones are written: Python and the database work at once,
    and two writes in flight let the database use two cores (index and foreign-key work dominates)."""
    tally: Counter[str] = Counter()
    after = 0
    writing: deque[asyncio.Task[None]] = deque()
    try:
        while True:
            page = await _read_page(res, setup, after)
            if page is None:
                break  # cancelled meanwhile: stop writing; _finish takes back what was written
            rows = _ledger_rows(setup, page, await _blocked(res, setup, page), tally, now)
            if len(writing) >= WRITES_IN_FLIGHT:
                await writing.popleft()
            writing.append(asyncio.create_task(_insert(res, setup, rows, now)))
            if len(page) < PAGE_SIZE:
                break
            after = page[-1].contact_id
    finally:
        while writing:
            await writing.popleft()
    return tally


async def _read_page(res: WorkerResources, setup: Setup, after: int) -> list[Recipient] | None:
    async with res.sessions() as session:
        campaign = await store.load_campaign(session, setup.campaign_id)
        if campaign is None or campaign.state != "scheduled":
            return None
        return await audience.page_recipients(session, setup.where, after=after, limit=PAGE_SIZE)


async def _blocked(res: WorkerResources, setup: Setup, page: list[Recipient]) -> set[str]:
    addresses = [a for a in (address_for(setup.channel, r) for r in page) if a is not None]
    async with res.sessions() as session:
        return await audience.suppressed_among(session, setup.workspace_id, setup.channel, addresses)


async def _insert(res: WorkerResources, setup: Setup, rows: list[tuple[Any, ...]], now: datetime) -> None:
    common = {
        "workspace_id": setup.workspace_id, "campaign_id": setup.campaign_id, "channel": setup.channel,
        "created_at": now,
    }  # fmt: skip
    async with res.sessions.begin() as session:
        await audience.insert_ledger(session, common, rows)


def _ledger_rows(
    setup: Setup, page: list[Recipient], blocked: set[str], tally: Counter[str], now: datetime
) -> list[tuple[Any, ...]]:
    rows = []
    for recipient in page:
        placed = setup.planner.place(recipient, suppressed=address_for(setup.channel, recipient) in blocked)
        if placed is None:
            tally["excluded"] += 1
            continue
        tally[placed.state] += 1
        rows.append((*_row(setup, placed, now), audience.ledger_zone(recipient)))
    return rows


def _row(setup: Setup, placed: Placement, now: datetime) -> tuple[Any, ...]:
    """The values of :data:`dispatcher.storage.audience.LEDGER_VARYING`, in order."""
    batch = MAIN_SEQ if setup.pilot and not placed.pilot else PILOT_SEQ
    done = placed.state != "planned"
    return (
        setup.batch_ids[batch],
        placed.contact_id,
        placed.variant,
        placed.address,
        placed.state,
        placed.not_before,
        now if done else None,
        _ERROR_OF.get(placed.state),
    )


async def _finish(session: AsyncSession, campaign: Campaign, tally: Counter[str], now: datetime) -> bool:
    await store.count_batch_sizes(session, campaign.id)
    await store.set_fields(session, campaign.id, excluded=tally["excluded"])
    if campaign.pilot_percent is not None and campaign.pilot_delay_minutes is not None:
        first = await store.first_pilot_send(session, campaign.id) or now
        release_at = max(first, now) + timedelta(minutes=campaign.pilot_delay_minutes)
        await store.schedule_release(session, campaign.id, release_at)
        await store.set_fields(session, campaign.id, pilot_release_at=release_at)
    fresh = await store.load_campaign(session, campaign.id)
    if fresh is not None and fresh.state == "cancelled":
        await store.cancel_rows(session, campaign.id, now=now)  # rows written after the cancel's UPDATE
        return False
    return await store.move_if(session, campaign.id, "scheduled", "running", now=now)


async def sweep_planning(ctx: dict[str, Any]) -> dict[str, int]:
    """Queue planning again for campaigns stuck in ``scheduled`` (Redis lost the job, or it died).

    Harmless when the job still exists: arq refuses a second job with the same id.
    """
    res = resources(ctx)
    async with res.sessions() as session:
        stuck = await store.scheduled_before(session, res.clock() - STUCK_AFTER)
    for campaign_id in stuck:
        await queue(ctx).enqueue_job(
            "plan_campaign",
            campaign_id,
            _job_id=plan_job_id(campaign_id),
            _queue_name=res.settings.queue_name,
        )
    return {"requeued": len(stuck)}


async def release_pilots(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron body: release the held rest of pilot campaigns whose automatic release time has come."""
    res = resources(ctx)
    async with res.sessions.begin() as session:
        released = await store.release_due_batches(session, now=res.clock())
    return {"released": released}
