"""``Idempotency-Key`` on creating POSTs: the first reply is stored in the same transaction as the creation,
so a retried request (client timeout, proxy replay) gets that reply and creates nothing twice."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy.exc
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.api.keys import SESSIONS, principal
from dispatcher.api.registry import IDEMPOTENCY_KEY
from dispatcher.errors import ConflictError, InputError
from dispatcher.storage.idempotency import find_reply, store_reply

Create = Callable[[AsyncSession], Awaitable[BaseModel]]
_KEY = re.compile(IDEMPOTENCY_KEY)


def check_key(request: web.Request) -> None:
    """Every authenticated POST documents the header, so every one refuses a malformed value alike."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and _KEY.fullmatch(key) is None:
        raise InputError(
            "Idempotency-Key must be 1 to 200 visible ASCII characters",
            details=[{"field": "Idempotency-Key", "message": "1 to 200 characters from ! to ~"}],
        )


async def create_once(
    request: web.Request, payload: BaseModel, create: Create, *, status: int = 201
) -> web.Response:
    key = request.headers.get("Idempotency-Key")
    workspace_id = principal(request).workspace_id
    if key is None:
        async with request.app[SESSIONS].begin() as session:
            result = await create(session)
        return web.json_response(text=result.model_dump_json(), status=status)
    fingerprint = hashlib.sha256(
        f"{request.method} {request.path} {payload.model_dump_json()}".encode()
    ).hexdigest()
    try:
        async with request.app[SESSIONS].begin() as session:
            stored = await find_reply(session, workspace_id, key)
            if stored is None:
                result = await create(session)
                body: dict[str, Any] = result.model_dump(mode="json")
                await store_reply(
                    session,
                    workspace_id=workspace_id,
                    key=key,
                    fingerprint=fingerprint,
                    status=status,
                    body=body,
                    now=datetime.now(UTC),
                )
                return web.json_response(body, status=status)
    except sqlalchemy.exc.IntegrityError:
        # A concurrent request with the same key won the race; answer with its stored reply.
        async with request.app[SESSIONS]() as session:
            stored = await find_reply(session, workspace_id, key)
        if stored is None:
            raise
    if stored.fingerprint != fingerprint:
        raise ConflictError("Idempotency-Key was already used with a different request")
    return web.json_response(stored.body, status=stored.status, headers={"Idempotent-Replayed": "true"})
