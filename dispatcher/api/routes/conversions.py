"""``POST /v1/conversions``: a shop reports a sale or sign-up of a tracked recipient."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from dispatcher.api.http import dump, parse_body
from dispatcher.api.keys import SESSIONS, SETTINGS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas_inbound import ConversionCreate, ConversionOut
from dispatcher.ops import opens as ops
from dispatcher.storage.campaigns import Event


def _out(event: Event) -> ConversionOut:
    payload = event.payload or {}
    return ConversionOut(
        id=event.id,
        message_id=event.message_id,
        campaign_id=event.campaign_id,
        contact_id=event.contact_id,
        value=event.value,
        currency=payload.get("currency"),
        external_id=str(payload.get("external_id", "")),
        occurred_at=event.occurred_at,
    )


async def create_conversion(request: web.Request) -> web.Response:
    body = await parse_body(request, ConversionCreate)
    async with request.app[SESSIONS].begin() as session:
        found = await ops.record_conversion(
            session,
            principal(request).workspace_id,
            secret=request.app[SETTINGS].secret_key,
            token=body.token,
            contact_id=body.contact_id,
            campaign_id=body.campaign_id,
            value=body.value,
            currency=body.currency,
            external_id=body.external_id,
            now=datetime.now(UTC),
        )
        out = _out(found.event)
    return dump(out, status=201 if found.created else 200)


def register(api: Registry) -> None:
    api.route(
        "POST",
        "/v1/conversions",
        summary="Record a conversion (201 when new; 200 with the first one for a repeated external_id)",
        scope="write",
        body=ConversionCreate,
        response=ConversionOut,
        status=201,
        errors=(404,),
        tags=("tracking",),
    )(create_conversion)
