"""Campaign services: create and edit drafts, the lifecycle actions, live progress and the spread preview.

Each action is one transaction that checks the move with :mod:`dispatcher.core.lifecycle` and applies it
as a guarded UPDATE; starting then rings the queue for the planning job (after the commit: a job must
never see a campaign its transaction has not stored yet). A lost enqueue is recovered by the planning
sweeper, since the campaign stays ``scheduled`` until planned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.core.lifecycle import transition
from dispatcher.errors import ConflictError, NotFoundError
from dispatcher.logs import get_logger
from dispatcher.ops import campaign_specs as specs
from dispatcher.pipeline.planning import plan_job_id
from dispatcher.storage import campaigns_q as store
from dispatcher.storage.campaigns import Batch, Campaign

log = get_logger(__name__)
PROGRESS_STATES = (
    "planned", "queued", "sending", "sent", "delivered", "failed", "expired", "suppressed", "capped",
    "cancelled",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CampaignView:
    campaign: Campaign
    counts: dict[str, int]
    batches: list[Batch]


async def get_campaign(session: AsyncSession, workspace_id: int, campaign_id: int) -> Campaign:
    found = await store.get_campaign(session, workspace_id, campaign_id)
    if found is None:
        raise NotFoundError(f"campaign {campaign_id} not found")
    return found


async def create_campaign(
    session: AsyncSession, workspace_id: int, spec: specs.CampaignSpec, *, now: datetime
) -> Campaign:
    values = await specs.resolve(session, workspace_id, spec)
    return await store.add_campaign(session, workspace_id=workspace_id, now=now, state="draft", **values)


async def update_campaign(
    session: AsyncSession, workspace_id: int, campaign_id: int, changes: Mapping[str, Any], *, now: datetime
) -> Campaign:
    """Drafts only: the changed fields over the stored ones, checked again as a whole."""
    campaign = await get_campaign(session, workspace_id, campaign_id)
    if campaign.state != "draft":
        raise ConflictError(f"campaign {campaign_id} is {campaign.state}: only a draft can be edited")
    merged = dict(changes)
    if "list_id" in merged and "segment_id" not in merged:
        merged["segment_id"] = None  # a new list replaces the old audience, segment included
    spec = dataclasses.replace(specs.spec_of(campaign), **merged)
    values = await specs.resolve(session, workspace_id, spec)
    await store.move(session, campaign, "draft", now=now, **values)
    return campaign


async def view(session: AsyncSession, campaign: Campaign, *, now: datetime) -> CampaignView:
    counts = await store.state_counts(session, campaign.id, now=now)
    batches = await store.batches_of(session, campaign.id)
    return CampaignView(campaign, counts, batches)


async def get_view(
    session: AsyncSession, workspace_id: int, campaign_id: int, *, now: datetime
) -> CampaignView:
    return await view(session, await get_campaign(session, workspace_id, campaign_id), now=now)


async def start_campaign(
    sessions: async_sessionmaker[AsyncSession],
    queue: ArqRedis,
    workspace_id: int,
    campaign_id: int,
    *,
    now: datetime,
    queue_name: str,
) -> CampaignView:
    async with sessions.begin() as session:
        campaign = await get_campaign(session, workspace_id, campaign_id)
        target = transition(campaign.state, "start")
        await specs.ready_provider(session, campaign)
        values = {
            "variants": await specs.pin_variants(session, campaign),
            "schedule": specs.frozen_schedule(campaign.schedule, now),
            "audience_max_id": await store.max_contact_id(session, workspace_id, campaign.list_id),
            "started_at": now,
        }
        await store.move(session, campaign, target, now=now, **values)
        result = await view(session, campaign, now=now)
    try:
        await queue.enqueue_job(
            "plan_campaign", campaign_id, _job_id=plan_job_id(campaign_id), _queue_name=queue_name
        )
    except Exception as exc:  # the campaign stays scheduled; the planning sweeper queues it again
        log.warning("campaign.enqueue_failed", campaign_id=campaign_id, error=type(exc).__name__)
    return result


async def act(
    session: AsyncSession, workspace_id: int, campaign_id: int, action: str, *, now: datetime
) -> CampaignView:
    """pause, resume or cancel. Cancelling takes back every row the dispatcher has not claimed yet."""
    campaign = await get_campaign(session, workspace_id, campaign_id)
    target = transition(campaign.state, action)
    if action == "resume":
        await specs.ready_provider(session, campaign)
    extra = {"finished_at": now} if action == "cancel" else {}
    await store.move(session, campaign, target, now=now, **extra)
    if action == "cancel":
        await store.cancel_rows(session, campaign.id, now=now)
    return await view(session, campaign, now=now)


async def release_pilot(
    session: AsyncSession, workspace_id: int, campaign_id: int, *, now: datetime
) -> CampaignView:
    campaign = await get_campaign(session, workspace_id, campaign_id)
    if campaign.pilot_percent is None:
        raise ConflictError(f"campaign {campaign_id} has no pilot: everything was released at start")
    if campaign.state not in ("running", "paused"):
        raise ConflictError(f"campaign {campaign_id} is {campaign.state}: a pilot is released while it runs")
    if await store.release_held(session, campaign.id, now=now) == 0:
        raise ConflictError(f"the pilot of campaign {campaign_id} was already released")
    await store.set_fields(session, campaign.id, pilot_release_at=now, updated_at=now)
    await session.refresh(campaign)
    return await view(session, campaign, now=now)


async def release_due_pilots(session: AsyncSession, now: datetime) -> int:
    """Every workspace: release the held rest of pilot campaigns whose delay has passed (cron).

    A cron in ``pipeline`` cannot import ``ops``: it calls :func:`dispatcher.storage.campaigns_q.
    release_due_batches` (or :func:`dispatcher.pipeline.planning.release_pilots`), which this wraps.
    """
    return await store.release_due_batches(session, now=now)
