"""Message templates: versioned CRUD, the shipped built-ins, and previews with SMS analysis and cost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.http import dump, next_cursor, parse_body, parse_query, path_id
from dispatcher.api.idempotency import create_once
from dispatcher.api.keys import SESSIONS, SETTINGS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas import MAX_VERSION
from dispatcher.api.schemas_templates import (
    CostOut,
    PreviewOut,
    PreviewRequest,
    SmsAnalysisOut,
    TemplateCreate,
    TemplateOut,
    TemplatePage,
    TemplateQuery,
    TemplateSummary,
    TemplateUpdate,
    TemplateVersionOut,
)
from dispatcher.core.personalise import recipient_variables
from dispatcher.core.sms import analysis_as_dict
from dispatcher.errors import NotFoundError, TemplateError
from dispatcher.logs import get_logger
from dispatcher.ops import templates as template_ops
from dispatcher.ops.builtin_templates import ensure_builtin_templates
from dispatcher.ops.template_preview import Preview, PreviewOptions, preview_message
from dispatcher.storage.templates import TemplateParts

log = get_logger(__name__)
_TAGS = ("templates",)


async def builtin_templates_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the database one): bring the shipped built-ins up to date at start-up.

    A failure is logged, not fatal: the template list syncs lazily when no built-in exists yet.
    """
    try:
        report = await ensure_builtin_templates(app[SESSIONS], now=datetime.now(UTC), always=True)
        log.info("templates.builtin_synced", report=str(report))
    except Exception as exc:  # an unmigrated database must not stop the API from answering /readyz
        log.warning("templates.builtin_sync_failed", error=type(exc).__name__)
    yield


def _version_out(view: template_ops.TemplateView) -> TemplateVersionOut:
    parts = view.parts
    try:
        names = template_ops.template_variables(parts, view.template.channel)
    except TemplateError:  # stored before a rule was tightened: still shown, previews will say why
        names = []
    return TemplateVersionOut(
        template_id=view.template.id,
        version=view.version.version,
        version_id=view.version.id,
        channel=view.template.channel,
        body=parts.body,
        subject=parts.subject,
        text=parts.text,
        html=parts.html,
        variables=names,
        created_at=view.version.created_at,
    )


def _template_out(view: template_ops.TemplateView) -> TemplateOut:
    summary = TemplateSummary.model_validate(view.template, from_attributes=True)
    return TemplateOut(**summary.model_dump(), current=_version_out(view))


def _parts(body: TemplateCreate | TemplateUpdate) -> TemplateParts:
    return TemplateParts(body=body.body, subject=body.subject, text=body.text, html=body.html)


async def create_template(request: web.Request) -> web.Response:
    body = await parse_body(request, TemplateCreate)
    workspace_id = principal(request).workspace_id

    async def create(session: AsyncSession) -> TemplateOut:
        view = await template_ops.create_template(
            session,
            workspace_id,
            name=body.name,
            channel=body.channel,
            parts=_parts(body),
            now=datetime.now(UTC),
        )
        return _template_out(view)

    return await create_once(request, body, create)


async def page_templates(request: web.Request) -> web.Response:
    query = parse_query(request, TemplateQuery)
    await ensure_builtin_templates(request.app[SESSIONS], now=datetime.now(UTC))
    async with request.app[SESSIONS]() as session:
        rows = await template_ops.page_templates(
            session,
            principal(request).workspace_id,
            after=query.after(),
            limit=query.limit,
            channel=query.channel,
            builtin=query.builtin,
        )
    items = [TemplateSummary.model_validate(row, from_attributes=True) for row in rows]
    return dump(TemplatePage(items=items, next_cursor=next_cursor(rows, query.limit)))


async def get_template(request: web.Request) -> web.Response:
    template_id = path_id(request, "template_id")
    async with request.app[SESSIONS]() as session:
        view = await template_ops.get_version(session, principal(request).workspace_id, template_id)
    return dump(_template_out(view))


async def get_version(request: web.Request) -> web.Response:
    template_id = path_id(request, "template_id")
    version = path_id(request, "version")
    if version > MAX_VERSION:
        raise NotFoundError(f"version {version} not found")
    async with request.app[SESSIONS]() as session:
        view = await template_ops.get_version(session, principal(request).workspace_id, template_id, version)
    return dump(_version_out(view))


async def update_template(request: web.Request) -> web.Response:
    template_id = path_id(request, "template_id")
    body = await parse_body(request, TemplateUpdate)
    async with request.app[SESSIONS].begin() as session:
        view = await template_ops.update_template(
            session,
            principal(request).workspace_id,
            template_id,
            name=body.name,
            channel=body.channel,
            parts=_parts(body),
            now=datetime.now(UTC),
        )
        out = _template_out(view)
    return dump(out)


async def delete_template(request: web.Request) -> web.Response:
    template_id = path_id(request, "template_id")
    async with request.app[SESSIONS].begin() as session:
        await template_ops.delete_template(
            session, principal(request).workspace_id, template_id, now=datetime.now(UTC)
        )
    return web.Response(status=204)


def _preview_out(view: template_ops.TemplateView, result: Preview, price: object) -> PreviewOut:
    sms = SmsAnalysisOut.model_validate(analysis_as_dict(result.sms)) if result.sms is not None else None
    cost = None
    if result.cost is not None and sms is not None:
        cost = CostOut.model_validate(
            {"price_per_segment": price, "segments": sms.segments, "total": result.cost}
        )
    return PreviewOut.model_validate(
        {
            "template_id": view.template.id,
            "version": view.version.version,
            "channel": view.template.channel,
            "parts": result.parts,
            "sms": sms,
            "smart_encoded": result.smart_encoded,
            "cost": cost,
            "warnings": result.warnings,
            "missing_variables": result.missing_variables,
            "links": result.links,
            "headers": result.headers,
        }
    )


async def preview_template(request: web.Request) -> web.Response:
    template_id = path_id(request, "template_id")
    body = await parse_body(request, PreviewRequest)
    async with request.app[SESSIONS]() as session:
        view = await template_ops.get_version(
            session, principal(request).workspace_id, template_id, body.version
        )
    compiled = template_ops.compile_parts(view.template.channel, view.parts)
    contact = body.contact.model_dump() if body.contact is not None else None
    options = PreviewOptions(
        base_url=request.app[SETTINGS].public_base_url,
        smart_encoding=body.smart_encoding,
        price_per_segment=body.provider_price_per_segment,
        track_links=body.track_links,
        max_segments=body.max_segments,
    )
    values = recipient_variables(body.variables, contact)
    result = preview_message(view.template.channel, compiled, values, options)
    return dump(_preview_out(view, result, body.provider_price_per_segment))


def register(api: Registry) -> None:
    api.route(
        "POST",
        "/v1/templates",
        summary="Create a template (every part is compiled: 422 names the part and line)",
        scope="write",
        body=TemplateCreate,
        response=TemplateOut,
        status=201,
        errors=(409,),
        tags=_TAGS,
    )(create_template)
    api.route(
        "GET",
        "/v1/templates",
        summary="List your templates and the shipped built-ins",
        scope="read",
        query=TemplateQuery,
        response=TemplatePage,
        tags=_TAGS,
    )(page_templates)
    api.route(
        "GET", "/v1/templates/{template_id}", summary="One template with its current version", scope="read",
        response=TemplateOut, tags=_TAGS,
    )(get_template)  # fmt: skip
    api.route(
        "PUT",
        "/v1/templates/{template_id}",
        summary="Store new content as the next version (built-ins are read-only: 409)",
        scope="write",
        body=TemplateUpdate,
        response=TemplateOut,
        errors=(409,),
        tags=_TAGS,
    )(update_template)
    api.route(
        "DELETE",
        "/v1/templates/{template_id}",
        summary="Delete a template (campaigns keep the version they pinned; built-ins: 409)",
        scope="write",
        status=204,
        errors=(409,),
        tags=_TAGS,
    )(delete_template)
    api.route(
        "GET", "/v1/templates/{template_id}/versions/{version}", summary="One version of a template",
        scope="read", response=TemplateVersionOut, tags=_TAGS,
    )(get_version)  # fmt: skip
    api.route(
        "POST",
        "/v1/templates/{template_id}/preview",
        summary="Render for a sample recipient: parts, SMS encoding/segments/cost and warnings",
        scope="read",
        body=PreviewRequest,
        response=PreviewOut,
        tags=_TAGS,
    )(preview_template)
