"""The caller's workspace and its API keys."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, next_cursor, parse_body, parse_query, path_id
from dispatcher.api.idempotency import create_once
from dispatcher.api.keys import SESSIONS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyPage, PageQuery, WorkspaceOut
from dispatcher.errors import ConflictError, NotFoundError
from dispatcher.ops.auth import create_key_in
from dispatcher.storage import keys as key_store


async def whoami(request: web.Request) -> web.Response:
    who = principal(request)
    async with request.app[SESSIONS]() as session:
        workspace = await key_store.get_workspace(session, who.workspace_id)
    if workspace is None:
        raise NotFoundError("workspace not found")
    return dump(
        WorkspaceOut(
            id=workspace.id,
            slug=workspace.slug,
            name=workspace.name,
            key_id=who.key_id,
            scopes=sorted(who.scopes),
        )
    )


async def list_keys(request: web.Request) -> web.Response:
    query = parse_query(request, PageQuery)
    async with request.app[SESSIONS]() as session:
        rows = await key_store.list_keys(
            session, principal(request).workspace_id, after=query.after(), limit=query.limit
        )
    items = [ApiKeyOut.model_validate(row, from_attributes=True) for row in rows]
    return dump(ApiKeyPage(items=items, next_cursor=next_cursor(rows, query.limit)))


async def create_key(request: web.Request) -> web.Response:
    body = await parse_body(request, ApiKeyCreate)
    workspace_id = principal(request).workspace_id

    async def create(session: AsyncSession) -> ApiKeyCreated:
        new = await create_key_in(
            session, workspace_id=workspace_id, name=body.name, scopes=body.scopes, now=datetime.now(UTC)
        )
        row = await key_store.get_key(session, workspace_id, new.id)
        assert row is not None
        return ApiKeyCreated.model_validate(
            {**ApiKeyOut.model_validate(row, from_attributes=True).model_dump(), "key": new.token}
        )

    return await create_once(request, body, create)


async def revoke_key(request: web.Request) -> web.Response:
    key_id = path_id(request, "key_id")
    if key_id == principal(request).key_id:  # no lock-out by accident: another admin key must do it
        raise ConflictError("an API key cannot revoke itself; revoke it with another admin key")
    async with request.app[SESSIONS].begin() as session:
        if not await key_store.revoke_key(
            session, principal(request).workspace_id, key_id, now=datetime.now(UTC)
        ):
            raise NotFoundError(f"API key {key_id} not found or already revoked")
    return web.Response(status=204)


def register(api: Registry) -> None:
    api.route(
        "GET",
        "/v1/workspace",
        summary="The workspace and scopes of the calling key",
        scope="read",
        response=WorkspaceOut,
        tags=("workspace",),
    )(whoami)
    api.route(
        "GET",
        "/v1/api-keys",
        summary="List this workspace's API keys (never the keys themselves)",
        scope="admin",
        query=PageQuery,
        response=ApiKeyPage,
        tags=("workspace",),
    )(list_keys)
    api.route(
        "POST",
        "/v1/api-keys",
        summary="Create an API key; the full key is returned once",
        scope="admin",
        body=ApiKeyCreate,
        response=ApiKeyCreated,
        status=201,
        errors=(409,),
        tags=("workspace",),
    )(create_key)
    api.route(
        "DELETE",
        "/v1/api-keys/{key_id}",
        summary="Revoke an API key (not the calling one)",
        scope="admin",
        status=204,
        errors=(409,),
        tags=("workspace",),
    )(revoke_key)
