"""The suppression list: per channel, with reason; only an operator's DELETE removes an entry."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, next_cursor, parse_body, parse_query, path_id
from dispatcher.api.idempotency import create_once
from dispatcher.api.keys import SESSIONS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas_lists import SuppressionCreate, SuppressionOut, SuppressionPage, SuppressionQuery
from dispatcher.ops import suppressions as ops


class _AlreadySuppressed(Exception):
    """Leaves ``create_once`` without storing a reply: the answer is "it exists" (200), not a creation."""

    def __init__(self, existing: SuppressionOut) -> None:
        super().__init__("already suppressed")
        self.existing = existing


async def create_suppression(request: web.Request) -> web.Response:
    body = await parse_body(request, SuppressionCreate)
    workspace_id = principal(request).workspace_id

    async def create(session: AsyncSession) -> SuppressionOut:
        row, created = await ops.suppress(
            session,
            workspace_id,
            channel=body.channel,
            address=body.address,
            reason=body.reason,
            source=body.source,
            default_region=body.default_region.upper() if body.default_region else None,
            now=datetime.now(UTC),
        )
        out = SuppressionOut.model_validate(row, from_attributes=True)
        if not created:
            raise _AlreadySuppressed(out)
        return out

    try:
        return await create_once(request, body, create)
    except _AlreadySuppressed as exc:
        return dump(exc.existing)


async def page_suppressions(request: web.Request) -> web.Response:
    query = parse_query(request, SuppressionQuery)
    async with request.app[SESSIONS]() as session:
        rows = await ops.page_suppressions(
            session,
            principal(request).workspace_id,
            channel=query.channel,
            reason=query.reason,
            address=query.address,
            after=query.after(),
            limit=query.limit,
        )
    items = [SuppressionOut.model_validate(row, from_attributes=True) for row in rows]
    return dump(SuppressionPage(items=items, next_cursor=next_cursor(rows, query.limit)))


async def get_suppression(request: web.Request) -> web.Response:
    suppression_id = path_id(request, "suppression_id")
    async with request.app[SESSIONS]() as session:
        row = await ops.get_suppression(session, principal(request).workspace_id, suppression_id)
    return dump(SuppressionOut.model_validate(row, from_attributes=True))


async def delete_suppression(request: web.Request) -> web.Response:
    suppression_id = path_id(request, "suppression_id")
    async with request.app[SESSIONS].begin() as session:
        await ops.delete_suppression(session, principal(request).workspace_id, suppression_id)
    return web.Response(status=204)


def register(api: Registry) -> None:
    api.route(
        "POST",
        "/v1/suppressions",
        summary="Suppress an address on a channel (201 when new, 200 with the existing entry otherwise)",
        scope="write",
        body=SuppressionCreate,
        response=SuppressionOut,
        status=201,
        tags=("suppressions",),
    )(create_suppression)
    api.route(
        "GET",
        "/v1/suppressions",
        summary="List suppressions; filter by channel, reason or address",
        scope="read",
        query=SuppressionQuery,
        response=SuppressionPage,
        tags=("suppressions",),
    )(page_suppressions)
    api.route(
        "GET",
        "/v1/suppressions/{suppression_id}",
        summary="One suppression",
        scope="read",
        response=SuppressionOut,
        tags=("suppressions",),
    )(get_suppression)
    api.route(
        "DELETE",
        "/v1/suppressions/{suppression_id}",
        summary="Remove a suppression (operator decision; imports never do this)",
        scope="write",
        status=204,
        tags=("suppressions",),
    )(delete_suppression)
