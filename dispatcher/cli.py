"""Command line: the only module that reads the environment.

``dispatcher migrate | serve | worker | apikey create | demo``, and the offline marketer tools ``lists clean |
sms-info | when``, which need neither a database nor Redis. With no ``DATABASE_URL`` the service uses a
SQLite file under ``var/``; with no ``REDIS_URL`` it starts (or reuses) the embedded Redis-compatible server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import click

from dispatcher import __version__
from dispatcher.cli_tools import TOOLS
from dispatcher.embedded import EmbeddedRedis, ensure_embedded_redis
from dispatcher.errors import DispatcherError
from dispatcher.logs import configure_logging
from dispatcher.loops import fast_event_loop, settle_gc
from dispatcher.settings import Settings


def load_settings() -> Settings:
    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[Settings]:
    """Settings with a concrete Redis URL; the embedded server is stopped on exit if we started it."""
    if settings.redis_url is not None:
        yield settings
        return
    embedded: EmbeddedRedis = ensure_embedded_redis(settings.var_dir)
    try:
        yield settings.with_overrides(redis_url=embedded.url)
    finally:
        embedded.stop()


@click.group()
@click.version_option(__version__, prog_name="dispatcher")
def main() -> None:
    """dispatcher: SMS and e-mail campaigns sent in each recipient's local-time window."""


@main.command()
def migrate() -> None:
    """Upgrade the database schema to the newest version."""
    from dispatcher.storage.migrations import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    click.echo("database is at the newest schema version")


@main.command()
@click.option("--host", default=None, help="Bind address (default DISPATCHER_HOST or 127.0.0.1)")
@click.option("--port", type=int, default=None, help="Port (default DISPATCHER_PORT or 8080)")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP API."""
    from aiohttp import web

    from dispatcher.api.app import create_app

    settings = load_settings()
    with redis_for(settings) as ready:
        app = create_app(ready)
        settle_gc()
        web.run_app(
            app,
            host=host or ready.host,
            port=port or ready.port,
            access_log=None,
            shutdown_timeout=15,
            print=None,
        )


@main.command()
@click.option("--burst", is_flag=True, help="Drain the queue and exit")
def worker(burst: bool) -> None:
    """Run an arq worker (run as many as you like, on any machine)."""
    from dispatcher.pipeline.worker import build_worker

    settings = load_settings()
    asyncio.set_event_loop(fast_event_loop())
    with redis_for(settings) as ready:
        assert ready.redis_url is not None
        build_worker(ready, ready.redis_url, burst=burst).run()


@main.group()
def apikey() -> None:
    """Manage API keys."""


@apikey.command("create")
@click.option("--workspace", required=True, help="Workspace slug; created when new")
@click.option("--name", required=True, help="What the key is for")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["read", "write", "send", "admin"]),
    default=("read", "write", "send"),
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def apikey_create(workspace: str, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    settings = load_settings()
    new = asyncio.run(_create_key(settings, workspace, name, scopes))
    if as_json:
        click.echo(json.dumps({"id": new[0], "workspace_id": new[1], "key": new[2]}))
    else:
        click.echo(new[2])
        click.echo("store it now: it cannot be shown again", err=True)


async def _create_key(
    settings: Settings, workspace: str, name: str, scopes: tuple[str, ...]
) -> tuple[int, int, str]:
    from dispatcher.ops.auth import create_key
    from dispatcher.storage.engine import create_engine, session_factory

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine).begin() as session:
            new = await create_key(
                session, workspace_slug=workspace, name=name, scopes=scopes, now=datetime.now(UTC)
            )
    finally:
        await engine.dispose()
    return new.id, new.workspace_id, new.token


@main.command()
def demo() -> None:
    """Run the end-to-end demo on embedded defaults (SQLite + embedded Redis)."""
    from dispatcher.demo import run_demo

    settings = load_settings()
    sys.exit(asyncio.run(run_demo(settings)))


@main.command("fake-sms")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True)
@click.option("--delivery-rate", type=float, default=0.97, show_default=True, help="Share delivered (0-1)")
@click.option(
    "--reply-rate", type=float, default=0.05, show_default=True, help="Share of delivered that reply"
)
@click.option("--inbound-url", default=None, help="Where replies are POSTed (Twilio inbound webhook form)")
@click.option("--rate-429", type=float, default=0.0, help="Share answered 429 with Retry-After")
@click.option("--rate-5xx", type=float, default=0.0, help="Share answered 503")
@click.option("--rate-timeout", type=float, default=0.0, help="Share accepted, then answered too late")
@click.option("--latency", type=float, default=0.0, help="Seconds before each answer")
@click.option("--seed", type=int, default=None, help="Seed for reproducible faults")
def fake_sms(
    host: str,
    port: int,
    delivery_rate: float,
    reply_rate: float,
    inbound_url: str | None,
    rate_429: float,
    rate_5xx: float,
    rate_timeout: float,
    latency: float,
    seed: int | None,
) -> None:
    """Local SMS provider stand-in speaking the Twilio-style API (demo, tests, benchmarks)."""
    from dispatcher.channels.fake_sms import serve_fake_sms
    from dispatcher.channels.fake_sms_store import FakeSmsConfig

    config = FakeSmsConfig(
        seed=seed,
        delivery_rate=delivery_rate,
        reply_rate=reply_rate,
        inbound_url=inbound_url,
        rate_429=rate_429,
        rate_503=rate_5xx,
        rate_timeout_after=rate_timeout,
        response_latency=latency,
    )
    click.echo(f"fake SMS provider on http://{host}:{port} (account {config.account_sid})", err=True)
    serve_fake_sms(host, port, config)


@main.command("fake-smtp")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=2525, show_default=True)
@click.option("--http-port", type=int, default=8025, show_default=True, help="/_stub/stats and messages")
@click.option("--bounce-prefix", default="bounce", show_default=True, help="Local parts always 550 5.1.1")
@click.option("--rate-4xx", type=float, default=0.0, help="Share of RCPTs answered 451")
@click.option("--rate-5xx", type=float, default=0.0, help="Share of RCPTs answered 550")
@click.option("--rate-reject-data", type=float, default=0.0, help="Share refused after DATA (554)")
@click.option("--rate-drop", type=float, default=0.0, help="Share stored, then the connection cut")
@click.option("--latency", type=float, default=0.0, help="Seconds before answering DATA")
@click.option("--username", default=None, help="Require AUTH with this user (and --password)")
@click.option("--password", default=None)
@click.option("--maildir", default=None, type=click.Path(file_okay=False), help="Also write messages here")
@click.option("--seed", type=int, default=None, help="Seed for reproducible faults")
def fake_smtp(
    host: str,
    port: int,
    http_port: int,
    bounce_prefix: str,
    rate_4xx: float,
    rate_5xx: float,
    rate_reject_data: float,
    rate_drop: float,
    latency: float,
    username: str | None,
    password: str | None,
    maildir: str | None,
    seed: int | None,
) -> None:
    """Local SMTP sink that stores what it receives and can answer with chosen errors."""
    from dispatcher.channels.fake_smtp import serve_fake_smtp
    from dispatcher.channels.fake_smtp_store import FakeSmtpConfig

    config = FakeSmtpConfig(
        seed=seed,
        bounce_prefix=bounce_prefix or None,
        rate_4xx=rate_4xx,
        rate_5xx=rate_5xx,
        rate_reject_data=rate_reject_data,
        rate_drop_after_data=rate_drop,
        latency=latency,
        username=username,
        password=password,
        maildir=maildir,
    )
    click.echo(f"fake SMTP sink on {host}:{port}, stats on http://{host}:{http_port}/_stub/stats", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_fake_smtp(host, port, http_port, config))


for tool in TOOLS:
    main.add_command(tool)


def run() -> None:
    try:
        main(standalone_mode=True)
    except DispatcherError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
