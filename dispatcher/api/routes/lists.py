"""Contact lists."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, next_cursor, parse_body, parse_query, path_id
from dispatcher.api.idempotency import create_once
from dispatcher.api.keys import SESSIONS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas import ListCreate, ListOut, ListPage, PageQuery
from dispatcher.ops import lists as list_ops
from dispatcher.storage import lists as list_store


async def create_list(request: web.Request) -> web.Response:
    body = await parse_body(request, ListCreate)
    workspace_id = principal(request).workspace_id

    async def create(session: AsyncSession) -> ListOut:
        row = await list_ops.create_list(
            session,
            workspace_id,
            name=body.name,
            description=body.description,
            default_region=body.default_region,
            default_timezone=body.default_timezone,
            now=datetime.now(UTC),
        )
        return ListOut.model_validate(row, from_attributes=True)

    return await create_once(request, body, create)


async def page_lists(request: web.Request) -> web.Response:
    query = parse_query(request, PageQuery)
    async with request.app[SESSIONS]() as session:
        rows = await list_store.page_lists(
            session, principal(request).workspace_id, after=query.after(), limit=query.limit
        )
    items = [ListOut.model_validate(row, from_attributes=True) for row in rows]
    return dump(ListPage(items=items, next_cursor=next_cursor(rows, query.limit)))


async def get_list(request: web.Request) -> web.Response:
    list_id = path_id(request, "list_id")
    async with request.app[SESSIONS]() as session:
        row = await list_ops.get_list(session, principal(request).workspace_id, list_id)
    return dump(ListOut.model_validate(row, from_attributes=True))


async def delete_list(request: web.Request) -> web.Response:
    list_id = path_id(request, "list_id")
    async with request.app[SESSIONS].begin() as session:
        await list_ops.delete_list(session, principal(request).workspace_id, list_id)
    return web.Response(status=204)


def register(api: Registry) -> None:
    api.route(
        "POST",
        "/v1/lists",
        summary="Create a contact list",
        scope="write",
        body=ListCreate,
        response=ListOut,
        status=201,
        errors=(409,),
        tags=("lists",),
    )(create_list)
    api.route(
        "GET",
        "/v1/lists",
        summary="List contact lists",
        scope="read",
        query=PageQuery,
        response=ListPage,
        tags=("lists",),
    )(page_lists)
    api.route(
        "GET",
        "/v1/lists/{list_id}",
        summary="One contact list",
        scope="read",
        response=ListOut,
        tags=("lists",),
    )(get_list)
    api.route(
        "DELETE",
        "/v1/lists/{list_id}",
        summary="Delete a list and its contacts",
        scope="write",
        status=204,
        tags=("lists",),
    )(delete_list)
