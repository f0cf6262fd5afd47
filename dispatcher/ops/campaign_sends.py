"""Resend to the failed recipients of a campaign, and preview when an audience would receive its messages.

Resend ("resend to failed only"): failed rows whose error may pass go back to ``planned`` in a new batch of
kind ``resend``, with attempts reset and a new first send instant inside the recipient's windows. Rows
that failed for a reason about the recipient (:data:`PERMANENT_ERRORS`) stay failed: sending again would
fail again or reach someone who asked not to be reached. ``possible_duplicate`` is left as it was. Rows
with no window left before the campaign's end stay failed too (counted as ``skipped``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.allocation import AudiencePlanner, Recipient
from dispatcher.core.lifecycle import transition
from dispatcher.core.windows import spread
from dispatcher.errors import ConflictError, InputError
from dispatcher.ops import campaign_specs as specs
from dispatcher.ops.campaigns import CampaignView, get_campaign, view
from dispatcher.pipeline.planning import audience_of, shape_of
from dispatcher.storage import audience
from dispatcher.storage import campaigns_q as store
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.contacts import ContactList

PERMANENT_ERRORS: Final = ("invalid_number", "unsubscribed", "not_mobile", "hard_bounce", "complaint")
BUCKETS: Final = {"15min": timedelta(minutes=15), "hour": timedelta(hours=1), "day": timedelta(days=1)}
PAGE_SIZE: Final = 5000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Resent:
    view: CampaignView
    resent: int
    skipped: int


async def _planner(session: AsyncSession, campaign: Campaign, now: datetime) -> AudiencePlanner:
    contact_list = await session.get(ContactList, campaign.list_id)
    return AudiencePlanner(shape_of(campaign, contact_list.default_timezone if contact_list else None, now))


async def resend_failed(
    session: AsyncSession, workspace_id: int, campaign_id: int, *, now: datetime
) -> Resent:
    campaign = await get_campaign(session, workspace_id, campaign_id)
    target = transition(campaign.state, "resend")
    await specs.ready_provider(session, campaign)
    planner = await _planner(session, campaign, now)
    if planner.shape.end <= now:
        raise ConflictError(
            f"campaign {campaign_id} ended at {planner.shape.end.isoformat()}: nothing can go"
        )
    batch = await store.add_batch(session, campaign, kind="resend", state="released", now=now)
    resent = skipped = after = 0
    while True:
        page = await audience.failed_page(
            session, campaign.id, permanent=PERMANENT_ERRORS, after=after, limit=PAGE_SIZE
        )
        updates = [(mid, when) for mid, r in page if (when := planner.first_send(r)) is not None]
        await audience.replan_failed(session, batch.id, updates, now=now)
        resent, skipped = resent + len(updates), skipped + len(page) - len(updates)
        if len(page) < PAGE_SIZE:
            break
        after = page[-1][0]
    if resent == 0:
        raise ConflictError(f"campaign {campaign_id} has no failed recipient that can be sent to again")
    await store.count_batch_sizes(session, campaign.id)
    await store.move(session, campaign, target, now=now, finished_at=None)
    return Resent(await view(session, campaign, now=now), resent, skipped)


@dataclass(frozen=True, slots=True)
class Spread:
    campaign_id: int
    bucket: str
    start: datetime
    end: datetime
    recipients: int  # counted in the preview
    unplaceable: int  # no send instant before the end: would expire
    buckets: dict[datetime, int]


async def spread_preview(
    session: AsyncSession, workspace_id: int, campaign_id: int, bucket: str, *, now: datetime
) -> Spread:
    """Draft: where the reachable audience would go if started now. Started: the rows still waiting."""
    if bucket not in BUCKETS:
        raise InputError(
            f"unknown bucket {bucket!r}; use {', '.join(BUCKETS)}", details=[{"field": "bucket"}]
        )
    campaign = await get_campaign(session, workspace_id, campaign_id)
    planner = await _planner(session, campaign, now)
    shape, step = planner.shape, BUCKETS[bucket]
    counts: dict[datetime, int] = {}
    if campaign.state == "draft":
        where = await audience_of(session, campaign, now)
        groups = await audience.zone_groups(session, audience.reachable(campaign.channel) & where)
        for zones, zone, n in groups:
            chosen = planner.zones(Recipient(0, None, None, False, zones, zone))
            slots = spread(shape.start, [chosen], shape.windows, shape.allowed, step, not_after=shape.end)
            for slot, one in slots.items():
                counts[slot] = counts.get(slot, 0) + one * n
        total = sum(n for _, _, n in groups)
    else:
        waiting = await audience.pending_send_times(session, campaign.id)
        for when, n in waiting:
            slot = _EPOCH + (max(when, now) - _EPOCH) // step * step
            counts[slot] = counts.get(slot, 0) + n
        total = sum(n for _, n in waiting)
    ordered = dict(sorted(counts.items()))
    return Spread(campaign.id, bucket, shape.start, shape.end, total, total - sum(ordered.values()), ordered)
