"""Provider accounts: CRUD with write-only secrets."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, next_cursor, parse_body, parse_query, path_id, read_json, validate
from dispatcher.api.idempotency import create_once
from dispatcher.api.keys import SESSIONS, SETTINGS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas_providers import (
    ProviderCreate,
    ProviderOut,
    ProviderPage,
    ProviderQuery,
    ProviderUpdate,
)
from dispatcher.errors import InputError
from dispatcher.ops import providers as ops
from dispatcher.storage import providers as store
from dispatcher.storage.content import Provider

_TAGS = ("providers",)


def provider_out(row: Provider) -> ProviderOut:
    return ProviderOut(
        id=row.id, name=row.name, channel=row.channel, kind=row.kind,
        config=ops.public_config(row.config, row.kind),
        price_per_segment=row.price_per_segment, rate_limit_per_s=row.rate_limit_per_s, priority=row.priority,
        enabled=row.enabled, created_at=row.created_at,
    )  # fmt: skip


async def create_provider(request: web.Request) -> web.Response:
    body = await parse_body(request, ProviderCreate)
    workspace_id = principal(request).workspace_id
    values = {**body.model_dump(exclude={"config"}), "config": body.config.stored()}
    allow_private = request.app[SETTINGS].allow_private_provider_urls

    async def create(session: AsyncSession) -> ProviderOut:
        row = await ops.create_provider(
            session, workspace_id, values, now=datetime.now(UTC), allow_private=allow_private
        )
        return provider_out(row)

    return await create_once(request, body, create)


async def page_providers(request: web.Request) -> web.Response:
    query = parse_query(request, ProviderQuery)
    async with request.app[SESSIONS]() as session:
        rows = await store.page_providers(
            session,
            principal(request).workspace_id,
            after=query.after(),
            limit=query.limit,
            channel=query.channel,
        )
    return dump(
        ProviderPage(items=[provider_out(r) for r in rows], next_cursor=next_cursor(rows, query.limit))
    )


async def get_provider(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    async with request.app[SESSIONS]() as session:
        row = await ops.get_provider(session, principal(request).workspace_id, provider_id)
    return dump(provider_out(row))


async def update_provider(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    data = await read_json(request)
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "kind" not in data:
        async with request.app[SESSIONS]() as session:  # a config is checked against the stored kind
            data["kind"] = (
                await ops.get_provider(session, principal(request).workspace_id, provider_id)
            ).kind
    if not isinstance(data, dict):
        raise InputError("body must be a JSON object")
    body = validate(ProviderUpdate, data)
    async with request.app[SESSIONS].begin() as session:
        row = await ops.update_provider(
            session,
            principal(request).workspace_id,
            provider_id,
            body.changes(),
            allow_private=request.app[SETTINGS].allow_private_provider_urls,
        )
        out = provider_out(row)
    return dump(out)


async def delete_provider(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    async with request.app[SESSIONS].begin() as session:
        await ops.delete_provider(session, principal(request).workspace_id, provider_id)
    return web.Response(status=204)


def register(api: Registry) -> None:
    path = "/v1/providers/{provider_id}"
    api.route(
        "POST", "/v1/providers", summary="Add a provider account (auth_token is write-only)", scope="write",
        body=ProviderCreate, response=ProviderOut, status=201, errors=(409,), tags=_TAGS,
    )(create_provider)  # fmt: skip
    api.route(
        "GET", "/v1/providers", summary="List provider accounts", scope="read", query=ProviderQuery,
        response=ProviderPage, tags=_TAGS,
    )(page_providers)  # fmt: skip
    api.route("GET", path, summary="One provider account", scope="read", response=ProviderOut, tags=_TAGS)(
        get_provider
    )
    api.route(
        "PUT", path, summary="Change a provider (enabled=false disables it; a missing secret is kept)",
        scope="write", body=ProviderUpdate, response=ProviderOut, errors=(409,), tags=_TAGS,
    )(update_provider)  # fmt: skip
    api.route(
        "DELETE", path, summary="Delete a provider no campaign uses (409 otherwise: disable it instead)",
        scope="write", status=204, errors=(409,), tags=_TAGS,
    )(delete_provider)  # fmt: skip
