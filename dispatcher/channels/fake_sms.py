"""``dispatcher fake-sms``: a local SMS provider speaking Twilio's Messages API, for demo, tests, benchmarks.

Endpoints (same wire protocol as Twilio, so ``TwilioHttpChannel`` crosses a real socket to reach it)::

    POST /2010-04-01/Accounts/{sid}/Messages.json         create: basic auth, form To/From/Body/StatusCallback
    GET  /2010-04-01/Accounts/{sid}/Messages/{msid}.json  look a message up (resolves an ambiguous send)
    GET  /_stub/messages?since=SEQ&limit=N&to=E164        what was accepted, in arrival order
    GET  /_stub/stats                                     counters, duplicates per idempotency token / To
    GET  /_stub/replies                                   inbound replies it posted
    POST /_stub/reset                                     forget everything

The ``I-Twilio-Idempotency-Token`` header is honoured: a repeat returns the first message and is counted as
``deduplicated``. Errors are Twilio-shaped: ``{"code", "message", "more_info", "status"}``. Twilio's magic
test numbers answer with their documented errors (+15005550001 invalid, +15005550004 unsubscribed,
+15005550009 not a mobile...). Faults (429, 500, 503, timeouts) are injected per ``FakeSmsConfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import random
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import aiohttp
from aiohttp import web

from dispatcher.channels.fake_sms_callbacks import CallbackSender
from dispatcher.channels.fake_sms_store import FakeSmsConfig, FakeSmsStore, Fault
from dispatcher.channels.fake_sms_wire import (
    message_body,
    message_json,
    parse_form,
    twilio_error,
    validate_form,
)
from dispatcher.channels.twilio_http import API_VERSION, IDEMPOTENCY_HEADER, basic_auth_header
from dispatcher.core.sms import analyse_sms
from dispatcher.loops import fast_event_loop, settle_gc

__all__ = [
    "FAKE_SMS",
    "FakeSms",
    "FakeSmsConfig",
    "FakeSmsRunner",
    "add_fake_sms",
    "serve_fake_sms",
    "start_fake_sms",
]

_FAULT_ANSWERS: Final[Mapping[str, tuple[int, int, str]]] = {
    "429": (429, 20429, "Too Many Requests"),
    "500": (500, 20500, "Internal Server Error"),
    "503": (503, 20503, "Service Unavailable"),
    "timeout_before": (503, 20503, "Service Unavailable"),
}


@dataclass(slots=True)
class FakeSms:
    """The running stand-in: its configuration, memory and the sender of its callbacks."""

    config: FakeSmsConfig
    store: FakeSmsStore = field(default_factory=FakeSmsStore)
    callbacks: CallbackSender | None = None
    in_flight: int = 0
    rng: random.Random = field(init=False)
    expected_auth: str = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.expected_auth = basic_auth_header(self.config.account_sid, self.config.auth_token)


def _authorised(state: FakeSms, request: web.BaseRequest, account_sid: str) -> web.Response | None:
    """None when the request may proceed, else Twilio's answer for bad credentials or a foreign account."""
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), state.expected_auth.encode()):
        state.store.counters["unauthorised"] += 1
        return twilio_error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
    if account_sid != state.config.account_sid:
        return twilio_error(404, 20404, "The requested resource was not found")
    return None


async def _fault_answer(state: FakeSms, fault: Fault) -> web.Response:
    state.store.counters[f"fault_{fault}"] += 1
    if fault == "timeout_before":
        await asyncio.sleep(state.config.timeout_sleep)
    status, code, message = _FAULT_ANSWERS[fault]
    headers = {"Retry-After": f"{state.config.retry_after:g}"} if status in (429, 503) else None
    return twilio_error(status, code, message, headers)


async def _read_form(state: FakeSms, request: web.BaseRequest) -> dict[str, str] | web.Response:
    """The validated form, or Twilio's 400 answer naming the problem."""
    try:
        form = parse_form((await request.read()).decode("utf-8"))
    except UnicodeDecodeError:
        form = None
    problem = (21600, "The request body is not UTF-8 form data.") if form is None else validate_form(form)
    if problem is not None or form is None:
        state.store.counters["rejected"] += 1
        return twilio_error(400, *(problem or (21600, "Bad request")))
    return form


async def create_message(state: FakeSms, request: web.BaseRequest, account_sid: str) -> web.Response:
    counters = state.store.counters
    counters["requests"] += 1
    # the peak of concurrent requests shows whether a client's concurrency bound holds
    state.in_flight += 1
    counters["max_in_flight"] = max(counters["max_in_flight"], state.in_flight)
    try:
        return await _create_message(state, request, account_sid)
    finally:
        state.in_flight -= 1


async def _create_message(state: FakeSms, request: web.BaseRequest, account_sid: str) -> web.Response:
    if (refusal := _authorised(state, request, account_sid)) is not None:
        return refusal
    if state.config.response_latency:
        await asyncio.sleep(state.config.response_latency)
    fault = state.config.choose_fault(state.rng.random())
    if fault is not None and fault != "timeout_after":
        return await _fault_answer(state, fault)
    form = await _read_form(state, request)
    if isinstance(form, web.Response):
        return form
    answer = _accept(state, form, request.headers.get(IDEMPOTENCY_HEADER))
    if fault == "timeout_after":
        state.store.counters["fault_timeout_after"] += 1
        await asyncio.sleep(state.config.timeout_sleep)
    return web.Response(body=answer, status=201, content_type="application/json")


def _accept(state: FakeSms, form: Mapping[str, str], token: str | None) -> bytes:
    """Record the message (unless its token was seen) and answer with it, before any status moves on."""
    existing = state.store.find(token)
    if existing is not None:
        state.store.counters["deduplicated"] += 1
        return message_body(state.config, existing)
    body = form["Body"]
    record = state.store.add(
        to=form["To"],
        sender=form["From"],
        body=body,
        segments=analyse_sms(body).segments,
        token=token,
        callback=form.get("StatusCallback") or None,
    )
    answer = message_body(state.config, record)
    if state.callbacks is not None:
        state.callbacks.schedule(record)
    return answer


async def fetch_message(state: FakeSms, request: web.BaseRequest, account_sid: str, sid: str) -> web.Response:
    if (refusal := _authorised(state, request, account_sid)) is not None:
        return refusal
    record = state.store.get(sid)
    if record is None:
        return twilio_error(404, 20404, "The requested resource was not found")
    return web.json_response(message_json(state.config, record))


def _query_int(request: web.BaseRequest, name: str, default: int) -> int | web.Response:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        return web.json_response({"error": f"{name} must be an integer"}, status=400)


async def list_messages(state: FakeSms, request: web.BaseRequest) -> web.Response:
    since = _query_int(request, "since", 0)
    limit = _query_int(request, "limit", 1000)
    if isinstance(since, web.Response):
        return since
    if isinstance(limit, web.Response):
        return limit
    found = state.store.since(since, max(1, min(limit, 100_000)), request.query.get("to") or None)
    next_seq = found[-1].seq if found else since
    return web.json_response({"messages": [r.as_dict() for r in found], "next": next_seq})


async def stats(state: FakeSms, request: web.BaseRequest) -> web.Response:
    return web.json_response(state.store.stats())


async def replies(state: FakeSms, request: web.BaseRequest) -> web.Response:
    return web.json_response({"replies": [r.as_dict() for r in state.store.replies]})


async def reset(state: FakeSms, request: web.BaseRequest) -> web.Response:
    state.store.reset()
    return web.json_response({"reset": True})


_StubRoute = Callable[[FakeSms, web.BaseRequest], Awaitable[web.Response]]
_STUB_ROUTES: Final[Mapping[str, tuple[str, _StubRoute]]] = {
    "/_stub/messages": ("GET", list_messages),
    "/_stub/stats": ("GET", stats),
    "/_stub/replies": ("GET", replies),
    "/_stub/reset": ("POST", reset),
}
_MESSAGES: Final = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Messages\.json")
_MESSAGE: Final = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Messages/([^/]+)\.json")


async def route(state: FakeSms, request: web.BaseRequest) -> web.Response:
    """The stand-in's few paths, matched by hand: a low-level aiohttp server without an application's
    router and middleware chain, which cost a tenth of the stand-in's time per message."""
    path, method = request.path, request.method
    if found := _MESSAGES.fullmatch(path):
        return await create_message(state, request, found[1]) if method == "POST" else _not_allowed("POST")
    if found := _MESSAGE.fullmatch(path):
        if method in ("GET", "HEAD"):
            return await fetch_message(state, request, found[1], found[2])
        return _not_allowed("GET")
    if (stub := _STUB_ROUTES.get(path)) is not None:
        allowed, handler = stub
        if method == allowed or (method == "HEAD" and allowed == "GET"):
            return await handler(state, request)
        return _not_allowed(allowed)
    return twilio_error(404, 20404, "The requested resource was not found")


def _not_allowed(allowed: str) -> web.Response:
    return web.json_response({"error": "method not allowed"}, status=405, headers={"Allow": allowed})


FAKE_SMS: Final = web.AppKey("fake_sms", FakeSms)


def add_fake_sms(app: web.Application, config: FakeSmsConfig | None = None) -> FakeSms:
    """Mount the stand-in on an application (behind its middleware, after its own routes), answering
    exactly as :class:`FakeSmsRunner` does; tests wrap it to log or alter what it sees."""
    state = app[FAKE_SMS] = FakeSms(config or FakeSmsConfig())

    async def handle(request: web.Request) -> web.Response:
        return await route(state, request)

    app.router.add_route("*", "/{path:.*}", handle)
    app.cleanup_ctx.append(_callback_sender)
    return state


async def _callback_sender(app: web.Application) -> AsyncIterator[None]:
    async with _callbacks_running(app[FAKE_SMS]):
        yield


@contextlib.asynccontextmanager
async def _callbacks_running(state: FakeSms) -> AsyncIterator[None]:
    """The sender of the stand-in's status callbacks and replies, for as long as it serves."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        state.callbacks = CallbackSender(state.config, state.store, state.rng, session)
        state.callbacks.start()
        try:
            yield
        finally:
            await state.callbacks.stop()


class FakeSmsRunner(web.ServerRunner):
    """Runs the stand-in on this loop; ``cleanup()`` also stops the sender of its status callbacks."""

    def __init__(self, state: FakeSms) -> None:
        # A client that gives up on an injected timeout cancels the sleeping handler (handler_cancellation),
        # so cleanup does not wait for it.
        server = web.Server(partial(route, state), handler_cancellation=True, access_log=None)
        super().__init__(server, shutdown_timeout=1.0)
        self.state = state
        self._callbacks = contextlib.AsyncExitStack()

    async def setup(self) -> None:
        await self._callbacks.enter_async_context(_callbacks_running(self.state))
        await super().setup()

    async def _cleanup_server(self) -> None:
        await super()._cleanup_server()
        await self._callbacks.aclose()


async def start_fake_sms(
    config: FakeSmsConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[FakeSmsRunner, str]:
    """Start the stand-in on this loop (port 0: any free port); returns the runner and its base URL.

    Stop it with ``await runner.cleanup()``."""
    runner = FakeSmsRunner(FakeSms(config or FakeSmsConfig()))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"


def serve_fake_sms(host: str, port: int, config: FakeSmsConfig | None = None) -> None:
    """Run the stand-in until SIGINT or SIGTERM (blocking; for the ``dispatcher fake-sms`` command)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner, _ = await start_fake_sms(config, host, port)
        settle_gc()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    loop = fast_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
