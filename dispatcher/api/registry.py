"""Routes and the OpenAPI document come from one registry, fed by the pydantic models that validate requests.

A handler is declared once with ``@api.route(...)``; the same models parse the request and describe it, so the
document cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dispatcher.api.schemas import ErrorBody

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    scope: str | None  # None: public, no API key
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    content_types: tuple[str, ...] = ("application/json",)
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    raw_response: str | None = None  # e.g. "text/plain" for /metrics
    raw_body: tuple[str, ...] = ()  # streamed bodies such as CSV uploads
    also_returns: tuple[str, ...] = ()  # other media types of the success reply, e.g. text/csv exports
    error_type: str = "application/json"  # media type of the handler's own ``errors`` (HTML pages: text/html)

    @property
    def name(self) -> str:
        """Route name and OpenAPI operationId: ``get_v1_lists_list_id``."""
        return f"{self.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', self.path.lower()).strip('_')}"


@dataclass
class Registry:
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(self, method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method=method.upper(), path=path, handler=handler, **options))
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_route(ep.method, ep.path, ep.handler, name=ep.name)

    def scope_of(self, method: str, canonical: str) -> str | None:
        for ep in self.endpoints:
            if ep.method == method and ep.path == canonical:
                return ep.scope
        return None


def openapi_document(registry: Registry, *, title: str, version: str, server: str) -> dict[str, Any]:
    models = _models(registry)
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for ep in registry.endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": _DESCRIPTION},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "API key"}},
        },
    }


_DESCRIPTION = (
    "dispatcher sends SMS and e-mail campaigns inside recipients' local-time windows. Authenticate with "
    "`Authorization: Bearer <API key>` (create one with `dispatcher apikey create`). Errors are "
    '`{"error": {"code", "message", "details"}}` with a 4xx status. Lists are paginated with `limit` and '
    "`cursor` (pass `next_cursor` from the previous page). POSTs that create things accept an "
    "`Idempotency-Key` header: a retry with the same key returns the first reply."
)


def _models(registry: Registry) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"ErrorBody": ErrorBody}
    for ep in registry.endpoints:
        for model in (ep.body, ep.response):
            if model is not None:
                seen[model.__name__] = model
    return list(seen.values())


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": ep.name,
        "tags": list(ep.tags),
        "parameters": _parameters(ep),
        "responses": _responses(ep),
    }
    if ep.scope is not None:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Requires an API key with the `{ep.scope}` scope."
    if ep.raw_body:
        op["requestBody"] = {"required": True, "content": {ct: _raw_schema(ct) for ct in ep.raw_body}}
    if ep.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {ct: {"schema": _ref(ep.body)} for ct in ep.content_types},
        }
    return op


def _raw_schema(content_type: str) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    if content_type == "multipart/form-data":
        form = {"type": "object", "properties": {"file": binary}, "required": ["file"]}
        return {"schema": {**form, "additionalProperties": False}}
    return {"schema": binary}


IDEMPOTENCY_KEY = r"^[!-~]{1,200}$"  # 1 to 200 visible ASCII characters


def _path_schema(name: str) -> dict[str, Any]:
    """Ids are positive integers; other path parts (link codes, signed tokens) are opaque strings that any
    value may take: an unknown one is a 404, and the open pixel answers its GIF whatever the token."""
    if name == "version":
        return {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    if name.endswith("_id"):
        return {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
    return {"type": "string"}


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(name)}
        for name in _PATH_PARAM.findall(ep.path)
    ]
    if ep.query is not None:
        schema = ep.query.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    if ep.method == "POST" and ep.scope is not None:
        schema = {"type": "string", "pattern": IDEMPOTENCY_KEY}
        params.append({"name": "Idempotency-Key", "in": "header", "required": False, "schema": schema})
    return params


def _responses(ep: Endpoint) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    content: dict[str, Any] = {ct: {"schema": {"type": "string"}} for ct in ep.also_returns}
    if ep.response is not None:
        content["application/json"] = {"schema": _ref(ep.response)}
    elif ep.raw_response is not None:
        content[ep.raw_response] = {"schema": {"type": "string"}}
    if content:
        ok["content"] = content
    responses: dict[str, Any] = {str(ep.status): ok}
    codes = set(ep.errors)
    if ep.scope is not None:  # the key is checked against the database: it may be unreachable
        codes |= {401, 403, 429, 503}
    if ep.body is not None or ep.query is not None or ep.raw_body:
        codes |= {400, 413, 422}
    if ep.method == "POST" and ep.scope is not None:  # Idempotency-Key: malformed, or reused elsewhere
        codes |= {409, 422}
    if "{" in ep.path:
        codes |= {404}
    for code in sorted(codes):
        if code in ep.errors and ep.error_type != "application/json":
            body: dict[str, Any] = {ep.error_type: {"schema": {"type": "string"}}}
        else:
            body = {"application/json": {"schema": _ref(ErrorBody)}}
        responses[str(code)] = {"description": _ERROR_TEXT.get(code, "Error"), "content": body}
    return responses


_ERROR_TEXT = {
    400: "Malformed body (not JSON or not UTF-8)",
    401: "Missing, unknown or revoked API key",
    403: "The API key lacks the scope",
    404: "Not found in this workspace",
    409: "The current state does not allow this",
    413: "Body larger than the limit",
    422: "Invalid values",
    429: "Too many requests",
    503: "Database or Redis unavailable",
}
