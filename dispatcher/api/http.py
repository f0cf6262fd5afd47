"""Parse requests into pydantic models and dump replies: the only place handlers touch raw HTTP."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from aiohttp import MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from pydantic import BaseModel, ValidationError

from dispatcher.api.keys import SETTINGS
from dispatcher.errors import InputError, MalformedBodyError, NotFoundError, PayloadTooLargeError

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request) -> Any:
    limit = request.app[SETTINGS].max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"JSON body over {limit} bytes")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > limit:  # chunked bodies carry no Content-Length: count ourselves
            raise PayloadTooLargeError(f"JSON body over {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise MalformedBodyError("empty body; send a JSON object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedBodyError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise MalformedBodyError(f"body is not acceptable JSON: {exc}") from None
    except RecursionError:
        raise MalformedBodyError("body is not acceptable JSON: nested too deeply") from None


_BAD_MULTIPART = "malformed form body: no boundary, or broken part headers"


async def open_multipart(request: web.Request) -> MultipartReader:
    try:
        return await request.multipart()
    except (ValueError, HttpProcessingError):  # e.g. multipart/form-data without a boundary
        raise MalformedBodyError(_BAD_MULTIPART) from None


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    try:
        return await request.post()
    except (ValueError, HttpProcessingError):
        raise MalformedBodyError(_BAD_MULTIPART) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InputError("body must be a JSON object")
    return validate(model, data)


def parse_query(request: web.Request, model: type[M]) -> M:
    # dict() would silently keep one of ?limit=1&limit=500: ambiguous input is refused instead
    repeated = sorted({name for name in request.query if len(request.query.getall(name)) > 1})
    if repeated:
        raise InputError(
            "query parameter given more than once",
            details=[{"field": name, "message": "give it once"} for name in repeated],
        )
    return validate(model, dict(request.query))


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"invalid {model.__name__}", details=validation_details(exc)) from None


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or None, "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def path_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18 or int(raw) == 0:
        raise NotFoundError(f"{name} {raw[:40]!r} not found")
    return int(raw)


def dump(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def next_cursor(items: Sequence[Any], limit: int) -> str | None:
    return str(items[-1].id) if len(items) == limit else None
