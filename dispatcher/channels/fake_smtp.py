"""``dispatcher fake-smtp``: a local SMTP sink (aiosmtpd) for demo, tests and benchmarks.

It speaks real SMTP (EHLO, optional STARTTLS and AUTH, MAIL, RCPT, DATA), keeps what it accepted in a
:class:`~dispatcher.channels.fake_smtp_store.FakeSmtpStore` (optionally also in a maildir), and answers
with chosen errors (see :class:`FakeSmtpConfig`). A small HTTP side, like the SMS stand-in's, serves::

    GET  /_stub/stats                                counters, per-recipient and per-Message-ID duplicates
    GET  /_stub/messages?since=SEQ&limit=N&to=ADDR   what was accepted, in order (``data=1``: raw message)
    POST /_stub/reset                                forget everything

aiosmtpd's ``Controller`` cannot bind port 0 and runs its own thread; here the server is created on the
caller's running loop, so tests read the store directly and any free port works.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import warnings
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from dispatcher.channels.fake_smtp_store import FakeSmtpConfig, FakeSmtpStore

__all__ = [
    "FAKE_SMTP",
    "FakeSmtp",
    "FakeSmtpConfig",
    "create_fake_smtp_http_app",
    "serve_fake_smtp",
    "start_fake_smtp",
]

_HARD_BOUNCE: Final = "550 5.1.1 No such user here"
_DATA_REJECTED: Final = "554 5.7.1 Message rejected as spam"


@dataclass(slots=True)
class FakeSmtp:
    """A running sink: where it listens, how it behaves, and what it received."""

    config: FakeSmtpConfig
    store: FakeSmtpStore
    host: str = "127.0.0.1"
    port: int = 0
    http_url: str | None = None
    rng: random.Random = field(init=False)
    sessions: weakref.WeakSet[SMTP] = field(default_factory=weakref.WeakSet)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)

    def disconnect_all(self) -> None:
        """Cut every client connection (a pooled client would otherwise hold the server open)."""
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()


FAKE_SMTP: Final = web.AppKey("fake_smtp", FakeSmtp)


class _Handler:
    """aiosmtpd hooks: RCPT and DATA answers follow the configuration; accepted messages go to the store."""

    def __init__(self, state: FakeSmtp) -> None:
        self.state = state

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        config, counters = self.state.config, self.state.store.counters
        local = address.rpartition("@")[0].lower()
        if config.bounce_prefix and local.startswith(config.bounce_prefix.lower()):
            counters["rcpt_bounced"] += 1
            return _HARD_BOUNCE
        fault = config.rcpt_fault(self.state.rng.random())
        if fault is not None:
            counters[f"rcpt_{fault}"] += 1
            return config.rcpt_4xx if fault == "4xx" else config.rcpt_5xx
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        state = self.state
        if state.config.latency:
            await asyncio.sleep(state.config.latency)
        draw = state.rng.random()
        if draw < state.config.rate_reject_data:
            state.store.counters["data_rejected"] += 1
            return _DATA_REJECTED
        content = envelope.original_content or b""
        record = state.store.add(str(envelope.mail_from or ""), list(envelope.rcpt_tos), content)
        if draw < state.config.rate_reject_data + state.config.rate_drop_after_data:
            state.store.counters["dropped_after_data"] += 1
            if isinstance(server.transport, asyncio.Transport):
                server.transport.abort()  # stored, yet the client never hears so
            return "250 2.0.0 Ok (never sent: the connection is gone)"
        return f"250 2.0.0 Ok: queued as {record.queue_id}"


def _authenticator(config: FakeSmtpConfig, store: FakeSmtpStore) -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode("utf-8", "replace") == config.username
            and auth_data.password.decode("utf-8", "replace") == config.password
        )
        store.counters["auth_ok" if ok else "auth_failed"] += 1
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    return authenticate


def _protocol_factory(state: FakeSmtp, tls_context: ssl.SSLContext | None) -> Any:
    handler = _Handler(state)
    config = state.config
    authenticator = _authenticator(config, state.store) if config.username is not None else None
    loop = asyncio.get_running_loop()

    def make() -> SMTP:
        state.store.counters["connections"] += 1
        with warnings.catch_warnings():
            # AUTH without TLS is what a local stand-in is for; aiosmtpd warns about it on every connection
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            protocol = _session(handler, tls_context, authenticator, loop)
        state.sessions.add(protocol)
        return protocol

    return make


def _session(
    handler: _Handler, tls_context: ssl.SSLContext | None, authenticator: Any, loop: asyncio.AbstractEventLoop
) -> SMTP:
    return SMTP(
        handler,
        hostname="fake-smtp.localhost",
        ident="dispatcher fake-smtp",
        tls_context=tls_context,
        require_starttls=tls_context is not None,
        authenticator=authenticator,
        auth_required=authenticator is not None,
        auth_require_tls=tls_context is not None,
        loop=loop,
    )


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAKE_SMTP].store.stats())


async def list_messages(request: web.Request) -> web.Response:
    store = request.app[FAKE_SMTP].store
    try:
        since = int(request.query.get("since") or 0)
        limit = max(1, min(int(request.query.get("limit") or 1000), 100_000))
    except ValueError:
        return web.json_response({"error": "since and limit must be integers"}, status=400)
    found = store.since(since, limit, request.query.get("to") or None)
    with_data = request.query.get("data") == "1"
    return web.json_response(
        {
            "messages": [m.as_dict(with_data=with_data) for m in found],
            "next": found[-1].seq if found else since,
        }
    )


async def reset(request: web.Request) -> web.Response:
    request.app[FAKE_SMTP].store.reset()
    return web.json_response({"reset": True})


def create_fake_smtp_http_app(state: FakeSmtp) -> web.Application:
    app = web.Application()
    app[FAKE_SMTP] = state
    app.router.add_get("/_stub/stats", stats)
    app.router.add_get("/_stub/messages", list_messages)
    app.router.add_post("/_stub/reset", reset)
    return app


@asynccontextmanager
async def start_fake_smtp(
    config: FakeSmtpConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    http_port: int | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> AsyncIterator[FakeSmtp]:
    """Run the sink on this loop (port 0: any free port) for the ``async with`` body.

    ``http_port`` (0 for any) also serves the ``/_stub`` endpoints at ``state.http_url``. With a
    ``tls_context`` the sink offers STARTTLS and requires it (AUTH only over TLS then).
    """
    config = config or FakeSmtpConfig()
    # aiosmtpd logs every SMTP command at INFO: with thousands of messages that drowns everything else
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    state = FakeSmtp(config, FakeSmtpStore(keep_data=config.keep_data, maildir=config.maildir), host)
    server = await asyncio.get_running_loop().create_server(_protocol_factory(state, tls_context), host, port)
    state.port = server.sockets[0].getsockname()[1]
    runner: web.AppRunner | None = None
    try:
        if http_port is not None:
            runner = web.AppRunner(create_fake_smtp_http_app(state), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, http_port).start()
            state.http_url = f"http://{host}:{runner.addresses[0][1]}"
        yield state
    finally:
        server.close()
        if runner is not None:
            await runner.cleanup()
        state.disconnect_all()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the closed sessions' handlers see connection_lost


async def serve_fake_smtp(
    host: str, port: int, http_port: int | None, config: FakeSmtpConfig | None = None
) -> None:
    """Run the sink until cancelled (for the ``dispatcher fake-smtp`` command)."""
    async with start_fake_smtp(config, host=host, port=port, http_port=http_port):
        await asyncio.Event().wait()
