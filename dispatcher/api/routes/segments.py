"""Segments: named filters over one list, with a live count, and a preview before saving.

Creation and preview live under the list (``/v1/lists/{list_id}/segments``) like imports do: the list is
addressed by the path, so another workspace's list answers 404 like every other foreign id.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, next_cursor, parse_body, parse_query, path_id
from dispatcher.api.idempotency import create_once
from dispatcher.api.keys import SESSIONS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas_lists import (
    AudienceOut,
    SegmentCreate,
    SegmentOut,
    SegmentPage,
    SegmentPreview,
    SegmentQuery,
)
from dispatcher.ops import segments as ops
from dispatcher.storage import segments as store


async def create_segment(request: web.Request) -> web.Response:
    list_id = path_id(request, "list_id")
    body = await parse_body(request, SegmentCreate)
    workspace_id = principal(request).workspace_id

    async def create(session: AsyncSession) -> SegmentOut:
        row = await ops.create_segment(
            session, workspace_id, list_id, name=body.name, filter_doc=body.filter, now=datetime.now(UTC)
        )
        return SegmentOut.model_validate(row, from_attributes=True)

    return await create_once(request, body, create)


async def preview_segment(request: web.Request) -> web.Response:
    list_id = path_id(request, "list_id")
    body = await parse_body(request, SegmentPreview)
    async with request.app[SESSIONS]() as session:
        found = await ops.preview(
            session, principal(request).workspace_id, list_id, body.filter, now=datetime.now(UTC)
        )
    return dump(AudienceOut(count=found.count, sample=found.sample))


async def page_segments(request: web.Request) -> web.Response:
    query = parse_query(request, SegmentQuery)
    async with request.app[SESSIONS]() as session:
        rows = await store.page_segments(
            session,
            principal(request).workspace_id,
            list_id=query.list_id,
            after=query.after(),
            limit=query.limit,
        )
    items = [SegmentOut.model_validate(row, from_attributes=True) for row in rows]
    return dump(SegmentPage(items=items, next_cursor=next_cursor(rows, query.limit)))


async def get_segment(request: web.Request) -> web.Response:
    segment_id = path_id(request, "segment_id")
    async with request.app[SESSIONS]() as session:
        row = await ops.get_segment(session, principal(request).workspace_id, segment_id)
        found = await ops.segment_audience(session, row, now=datetime.now(UTC))
    out = SegmentOut.model_validate(row, from_attributes=True)
    return dump(out.model_copy(update={"count": found.count}))


async def delete_segment(request: web.Request) -> web.Response:
    segment_id = path_id(request, "segment_id")
    async with request.app[SESSIONS].begin() as session:
        await ops.delete_segment(session, principal(request).workspace_id, segment_id)
    return web.Response(status=204)


def register(api: Registry) -> None:
    api.route(
        "POST",
        "/v1/lists/{list_id}/segments",
        summary="Save a segment (a validated filter) of a list",
        scope="write",
        body=SegmentCreate,
        response=SegmentOut,
        status=201,
        tags=("segments",),
    )(create_segment)
    api.route(
        "POST",
        "/v1/lists/{list_id}/segments/preview",
        summary="Count the contacts a filter selects, with the first few ids, without saving it",
        scope="read",
        body=SegmentPreview,
        response=AudienceOut,
        tags=("segments",),
    )(preview_segment)
    api.route(
        "GET",
        "/v1/segments",
        summary="List segments, optionally of one list",
        scope="read",
        query=SegmentQuery,
        response=SegmentPage,
        tags=("segments",),
    )(page_segments)
    api.route(
        "GET",
        "/v1/segments/{segment_id}",
        summary="One segment with its live count",
        scope="read",
        response=SegmentOut,
        tags=("segments",),
    )(get_segment)
    api.route(
        "DELETE",
        "/v1/segments/{segment_id}",
        summary="Delete a segment (409 while a campaign uses it)",
        scope="write",
        status=204,
        errors=(409,),
        tags=("segments",),
    )(delete_segment)
