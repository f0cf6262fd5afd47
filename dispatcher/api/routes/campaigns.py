"""Campaigns: drafts, the lifecycle actions (start, pause, resume, cancel, release-pilot, resend-failed),
live progress from the send ledger, and the send-time spread preview."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, next_cursor, parse_body, parse_query, path_id
from dispatcher.api.idempotency import create_once
from dispatcher.api.keys import REDIS, SESSIONS, SETTINGS, principal
from dispatcher.api.registry import Handler, Registry
from dispatcher.api.schemas_campaigns import (
    BatchOut,
    CampaignCreate,
    CampaignDetail,
    CampaignOut,
    CampaignPage,
    CampaignQuery,
    CampaignUpdate,
    PilotOut,
    ProgressOut,
    ResendOut,
    SpreadBucket,
    SpreadOut,
    SpreadQuery,
)
from dispatcher.ops import campaign_sends as sends
from dispatcher.ops import campaigns as ops
from dispatcher.ops.campaign_specs import CampaignSpec
from dispatcher.pipeline.queue import wake_dispatcher
from dispatcher.storage import campaigns_q as store
from dispatcher.storage.campaigns import Campaign

_TAGS = ("campaigns",)


def campaign_out(row: Campaign) -> CampaignOut:
    pilot = None
    if row.pilot_percent is not None:
        pilot = PilotOut(
            percent=row.pilot_percent,
            release_after_minutes=row.pilot_delay_minutes,
            release_at=row.pilot_release_at,
        )
    return CampaignOut.model_validate(
        {
            **{k: getattr(row, k) for k in CampaignOut.model_fields if k != "pilot"},
            "pilot": pilot,
        }
    )


def detail_out(found: ops.CampaignView) -> CampaignDetail:
    counts = found.counts
    progress = {state: counts.get(state, 0) for state in ops.PROGRESS_STATES}
    progress["total"] = sum(progress.values())
    extra = {
        "deferred": counts.get("deferred", 0),
        "excluded": found.campaign.excluded,
        "spent": found.campaign.spent,
    }
    return CampaignDetail(
        **campaign_out(found.campaign).model_dump(),
        progress=ProgressOut.model_validate(progress | extra),
        batches=[BatchOut.model_validate(b, from_attributes=True) for b in found.batches],
    )


async def create_campaign(request: web.Request) -> web.Response:
    body = await parse_body(request, CampaignCreate)
    spec = CampaignSpec(**body.spec_values())
    workspace_id = principal(request).workspace_id

    async def create(session: AsyncSession) -> CampaignOut:
        return campaign_out(await ops.create_campaign(session, workspace_id, spec, now=datetime.now(UTC)))

    return await create_once(request, body, create)


async def page_campaigns(request: web.Request) -> web.Response:
    query = parse_query(request, CampaignQuery)
    async with request.app[SESSIONS]() as session:
        rows = await store.page_campaigns(
            session,
            principal(request).workspace_id,
            after=query.after(),
            limit=query.limit,
            state=query.state,
        )
    return dump(
        CampaignPage(items=[campaign_out(r) for r in rows], next_cursor=next_cursor(rows, query.limit))
    )


async def get_campaign(request: web.Request) -> web.Response:
    campaign_id = path_id(request, "campaign_id")
    async with request.app[SESSIONS]() as session:
        found = await ops.get_view(
            session, principal(request).workspace_id, campaign_id, now=datetime.now(UTC)
        )
    return dump(detail_out(found))


async def update_campaign(request: web.Request) -> web.Response:
    campaign_id = path_id(request, "campaign_id")
    body = await parse_body(request, CampaignUpdate)
    changes = body.changes()
    async with request.app[SESSIONS].begin() as session:
        row = await ops.update_campaign(
            session, principal(request).workspace_id, campaign_id, changes, now=datetime.now(UTC)
        )
        out = campaign_out(row)
    return dump(out)


async def start_campaign(request: web.Request) -> web.Response:
    campaign_id = path_id(request, "campaign_id")
    settings = request.app[SETTINGS]
    found = await ops.start_campaign(
        request.app[SESSIONS], request.app[REDIS], principal(request).workspace_id, campaign_id,
        now=datetime.now(UTC), queue_name=settings.queue_name,
    )  # fmt: skip
    return dump(detail_out(found))


def _action(name: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        campaign_id = path_id(request, "campaign_id")
        async with request.app[SESSIONS].begin() as session:
            found = await ops.act(
                session, principal(request).workspace_id, campaign_id, name, now=datetime.now(UTC)
            )
            out = detail_out(found)
        if name == "resume":  # committed: the tick will see it running
            await wake_dispatcher(request.app[REDIS], request.app[SETTINGS].queue_name)
        return dump(out)

    handle.__name__ = f"{name}_campaign"
    return handle


async def release_pilot(request: web.Request) -> web.Response:
    campaign_id = path_id(request, "campaign_id")
    async with request.app[SESSIONS].begin() as session:
        found = await ops.release_pilot(
            session, principal(request).workspace_id, campaign_id, now=datetime.now(UTC)
        )
        out = detail_out(found)
    await wake_dispatcher(request.app[REDIS], request.app[SETTINGS].queue_name)
    return dump(out)


async def resend_failed(request: web.Request) -> web.Response:
    campaign_id = path_id(request, "campaign_id")
    async with request.app[SESSIONS].begin() as session:
        done = await sends.resend_failed(
            session, principal(request).workspace_id, campaign_id, now=datetime.now(UTC)
        )
        out = ResendOut(resent=done.resent, skipped=done.skipped, campaign=detail_out(done.view))
    return dump(out)


async def spread(request: web.Request) -> web.Response:
    campaign_id = path_id(request, "campaign_id")
    query = parse_query(request, SpreadQuery)
    async with request.app[SESSIONS]() as session:
        found = await sends.spread_preview(
            session, principal(request).workspace_id, campaign_id, query.bucket, now=datetime.now(UTC)
        )
    buckets = [SpreadBucket(at=at, count=n) for at, n in found.buckets.items()]
    return dump(
        SpreadOut(
            campaign_id=found.campaign_id, bucket=found.bucket, start=found.start, end=found.end,
            recipients=found.recipients, unplaceable=found.unplaceable, buckets=buckets,
        )
    )  # fmt: skip


_ACTIONS = (
    ("start", "Start: pin template versions, freeze the audience into the send ledger, then run", None),
    ("pause", "Pause sending (rows already handed to the provider finish)", "pause"),
    ("resume", "Resume a paused campaign", "resume"),
    ("cancel", "Cancel: rows not yet claimed by the dispatcher become cancelled", "cancel"),
)


def register(api: Registry) -> None:
    base, one = "/v1/campaigns", "/v1/campaigns/{campaign_id}"
    api.route(
        "POST", base, summary="Create a draft campaign", scope="write", body=CampaignCreate,
        response=CampaignOut, status=201, tags=_TAGS,
    )(create_campaign)  # fmt: skip
    api.route(
        "GET",
        base,
        summary="List campaigns",
        scope="read",
        query=CampaignQuery,
        response=CampaignPage,
        tags=_TAGS,
    )(page_campaigns)
    api.route("GET", one, summary="One campaign with live progress", scope="read", response=CampaignDetail,
              tags=_TAGS)(get_campaign)  # fmt: skip
    api.route(
        "PUT", one, summary="Change a draft (409 once started)", scope="write", body=CampaignUpdate,
        response=CampaignOut, errors=(409,), tags=_TAGS,
    )(update_campaign)  # fmt: skip
    for name, summary, action in _ACTIONS:
        handler = start_campaign if action is None else _action(action)
        api.route(
            "POST", f"{one}/{name}", summary=summary, scope="send", response=CampaignDetail, errors=(409,),
            tags=_TAGS,
        )(handler)  # fmt: skip
    api.route(
        "POST", f"{one}/release-pilot", summary="Release the rest of a pilot campaign now", scope="send",
        response=CampaignDetail, errors=(409,), tags=_TAGS,
    )(release_pilot)  # fmt: skip
    api.route(
        "POST", f"{one}/resend-failed", scope="send", response=ResendOut, errors=(409,), tags=_TAGS,
        summary="Send again to failed recipients whose error may pass (not invalid_number, unsubscribed, "
        "not_mobile, hard_bounce, complaint), in a new resend batch",
    )(resend_failed)  # fmt: skip
    api.route(
        "GET", f"{one}/spread", summary="When the audience would receive the message, in UTC buckets",
        scope="read", query=SpreadQuery, response=SpreadOut, tags=_TAGS,
    )(spread)  # fmt: skip
