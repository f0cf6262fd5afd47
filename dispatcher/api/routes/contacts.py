"""Browsing a list's contacts and erasing one person."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from multidict import MultiMapping

from dispatcher.api.http import dump, next_cursor, path_id, validate
from dispatcher.api.keys import SESSIONS, principal
from dispatcher.api.registry import Registry
from dispatcher.api.schemas_lists import ContactOut, ContactPage, ContactQuery
from dispatcher.core.segments import ATTRIBUTE_NAME, MAX_TEXT
from dispatcher.errors import InputError
from dispatcher.ops import contacts as ops

ATTR_PREFIX = "attr."
MAX_ATTR_FILTERS = 20


def attribute_filters(query: MultiMapping[str]) -> dict[str, tuple[str, ...]]:
    """``attr.<name>=value`` parameters; a repeated name means any of the values."""
    found: dict[str, tuple[str, ...]] = {}
    for key in dict.fromkeys(k for k in query if k.startswith(ATTR_PREFIX)):
        name = key.removeprefix(ATTR_PREFIX)
        problem = None
        if not ATTRIBUTE_NAME.fullmatch(name):
            problem = "attribute names are 1-100 letters, digits, spaces, '_', '.' or '-'"
        elif any(len(v) > MAX_TEXT for v in query.getall(key)):
            problem = f"values are at most {MAX_TEXT} characters"
        if problem:
            raise InputError(
                f"invalid query parameter {key[:120]!r}", details=[{"field": key[:120], "message": problem}]
            )
        found[name] = tuple(query.getall(key))
    if len(found) > MAX_ATTR_FILTERS:
        raise InputError(f"at most {MAX_ATTR_FILTERS} attr.<name> filters")
    return found


async def page_contacts(request: web.Request) -> web.Response:
    list_id = path_id(request, "list_id")
    attributes = attribute_filters(request.query)
    plain = {k: v for k, v in request.query.items() if not k.startswith(ATTR_PREFIX)}
    query = validate(ContactQuery, plain)
    criteria = ops.Criteria(
        sms_capable=query.sms_capable,
        has_email=query.has_email,
        has_phone=query.has_phone,
        phone_region=query.phone_region,
        attributes=attributes,
    )
    async with request.app[SESSIONS]() as session:
        rows = await ops.page_contacts(
            session,
            principal(request).workspace_id,
            list_id,
            criteria=criteria,
            q=query.q,
            segment_id=query.segment_id,
            after=query.after(),
            limit=query.limit,
            now=datetime.now(UTC),
        )
    items = [ContactOut.model_validate(row, from_attributes=True) for row in rows]
    return dump(ContactPage(items=items, next_cursor=next_cursor(rows, query.limit)))


async def get_contact(request: web.Request) -> web.Response:
    contact_id = path_id(request, "contact_id")
    async with request.app[SESSIONS]() as session:
        row = await ops.get_contact(session, principal(request).workspace_id, contact_id)
    return dump(ContactOut.model_validate(row, from_attributes=True))


async def erase_contact(request: web.Request) -> web.Response:
    contact_id = path_id(request, "contact_id")
    async with request.app[SESSIONS].begin() as session:
        await ops.erase_contact(session, principal(request).workspace_id, contact_id, now=datetime.now(UTC))
    return web.Response(status=204)


def register(api: Registry) -> None:
    api.route(
        "GET",
        "/v1/lists/{list_id}/contacts",
        summary=(
            "Browse a list's contacts; filter with the parameters below and with attr.<name>=value "
            "(custom attributes; repeat a name to match any of several values)"
        ),
        scope="read",
        query=ContactQuery,
        response=ContactPage,
        tags=("contacts",),
    )(page_contacts)
    api.route(
        "GET",
        "/v1/contacts/{contact_id}",
        summary="One contact",
        scope="read",
        response=ContactOut,
        tags=("contacts",),
    )(get_contact)
    api.route(
        "DELETE",
        "/v1/contacts/{contact_id}",
        summary="Erase a contact: personal data scrubbed, no suppression added (add one if needed)",
        scope="write",
        status=204,
        tags=("contacts",),
    )(erase_contact)
