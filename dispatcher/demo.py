"""``dispatcher demo``: the main job end to end on embedded defaults, as a new user would see it.

It starts everything itself (SQLite file, embedded Redis, the HTTP API, a real arq worker process), drives the
public HTTP API only, prints what happened and stops everything cleanly. Later stages (import, campaign,
receipts, report) extend the same script.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from dispatcher.api.app import create_app
from dispatcher.channels.fake_sms import start_fake_sms
from dispatcher.channels.fake_sms_store import FakeSmsConfig
from dispatcher.demo_campaign import run_campaign, stub_stats
from dispatcher.demo_email import handed_once, run_email_campaign, show_reports
from dispatcher.embedded import ensure_embedded_redis
from dispatcher.ops.auth import create_key
from dispatcher.settings import Settings, default_sqlite_url
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.migrations import upgrade


class DemoFailed(Exception):
    pass


def say(text: str) -> None:
    print(text, flush=True)


async def run_demo(base: Settings) -> int:
    demo_dir = base.var_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    settings = base.with_overrides(var_dir=demo_dir)
    if base.is_sqlite and base.database_url == default_sqlite_url(base.var_dir):
        db_file = demo_dir / "demo.db"
        for leftover in demo_dir.glob("demo.db*"):
            leftover.unlink()
        settings = settings.with_overrides(
            database_url=default_sqlite_url(demo_dir).replace("dispatcher.db", db_file.name)
        )
    try:
        async with AsyncExitStack() as stack:
            await _run(settings, stack)
    except DemoFailed as exc:
        say(f"\nDEMO FAILED: {exc}")
        return 1
    say("\ndemo finished: every step above ran over real sockets against real processes")
    return 0


async def _run(settings: Settings, stack: AsyncExitStack) -> None:
    say(f"1. database  {_redact(settings.database_url)}")
    await asyncio.to_thread(upgrade, settings.database_url)
    if settings.redis_url is None:
        embedded = ensure_embedded_redis(settings.var_dir)
        stack.callback(embedded.stop)
        settings = settings.with_overrides(redis_url=embedded.url)
        say(f"2. redis     embedded valkey-server pid {embedded.pid} at {embedded.url}")
    else:
        say(f"2. redis     {_redact(settings.redis_url)}")
    admin, other = await _keys(settings)
    port = _free_port()
    settings = settings.with_overrides(
        port=port, public_base_url=f"http://127.0.0.1:{port}", allow_private_provider_urls=True
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    say(f"3. api       http://127.0.0.1:{port}  (docs: /v1/docs)")
    worker = await _start_worker(settings)
    stack.push_async_callback(_stop_worker, worker)
    say(f"4. worker    arq worker process pid {worker.pid}")
    config = FakeSmsConfig(seed=7, delivery_rate=0.97, response_latency=0.002)
    stub_runner, stub_url = await start_fake_sms(config)
    stack.push_async_callback(stub_runner.cleanup)
    say(f"5. sms       local SMS provider stand-in (Twilio-style API) at {stub_url}")
    http = await stack.enter_async_context(aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}"))
    list_id = await _exercise(http, admin, other, worker)

    async def call(method: str, path: str, key: str | None = None, expect: int = 200, **kw: Any) -> Any:
        return await _call(http, method, path, key, expect, **kw)

    final = await run_campaign(call, say, admin, list_id, stub_url, config.account_sid, config.auth_token)
    stats = await stub_stats(stub_url)
    if not await handed_once(call, say, admin, final, stats, "SMS provider stand-in"):
        raise DemoFailed("the SMS campaign did not hand every message over exactly once")
    mail, received = await run_email_campaign(call, say, admin, list_id, stack)
    if not await handed_once(call, say, admin, mail, received, "SMTP sink"):
        raise DemoFailed("the e-mail campaign did not hand every message over exactly once")
    await show_reports(call, say, admin, [final["id"], mail["id"]], settings.var_dir / "reports")


async def _keys(settings: Settings) -> tuple[str, str]:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine).begin() as session:
            now = datetime.now(UTC)
            admin = await create_key(
                session, workspace_slug="demo-brand", name="demo admin", scopes=["admin"], now=now
            )
            other = await create_key(
                session, workspace_slug="other-brand", name="other brand", scopes=["read"], now=now
            )
    finally:
        await engine.dispose()
    return admin.token, other.token


async def _start_worker(settings: Settings) -> asyncio.subprocess.Process:
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url or "",
        DISPATCHER_VAR_DIR=str(settings.var_dir),
        DISPATCHER_SECRET_KEY=settings.secret_key,
        # links, pixels and status callbacks in what the worker sends point at this demo's API
        DISPATCHER_PUBLIC_URL=settings.public_base_url,
        DISPATCHER_ALLOW_PRIVATE_PROVIDER_URLS="1",
        DISPATCHER_LOG_LEVEL="WARNING",
    )
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "dispatcher", "worker", env=env)


async def _stop_worker(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    say(f"   worker stopped cleanly (exit code {proc.returncode})")


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    key: str | None = None,
    expect: int = 200,
    **kwargs: Any,
) -> Any:
    headers = dict(kwargs.pop("headers", {}))
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with http.request(method, path, headers=headers, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        if response.status != expect:
            raise DemoFailed(f"{method} {path}: expected {expect}, got {response.status}: {body}")
        return body


async def _exercise(
    http: aiohttp.ClientSession, admin: str, other: str, worker: asyncio.subprocess.Process
) -> int:
    say("\n-- talking to the API --")
    ready = await _wait_ready(http, worker)
    say(
        f"GET  /readyz            database={ready['database']} redis={ready['redis']} "
        f"workers={ready['workers']}"
    )
    me = await _call(http, "GET", "/v1/workspace", admin)
    say(f"GET  /v1/workspace      workspace '{me['slug']}' scopes {','.join(me['scopes'])}")
    payload = {"name": "Spring newsletter", "default_region": "US", "default_timezone": "America/New_York"}
    first = await _call(
        http, "POST", "/v1/lists", admin, 201, json=payload, headers={"Idempotency-Key": "demo-1"}
    )
    again = await _call(
        http, "POST", "/v1/lists", admin, 201, json=payload, headers={"Idempotency-Key": "demo-1"}
    )
    say(
        f"POST /v1/lists          created list {first['id']}; "
        f"retry with the same Idempotency-Key -> list {again['id']}"
    )
    bad = await _call(http, "POST", "/v1/lists", admin, 422, json={"name": "", "default_region": "USA"})
    say(
        f"POST /v1/lists (bad)    422 {bad['error']['code']}: {[d['field'] for d in bad['error']['details']]}"
    )
    await _call(
        http, "POST", "/v1/lists", admin, 400, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    say("POST /v1/lists (junk)   400 malformed_body")
    lists = await _call(http, "GET", "/v1/lists?limit=10", admin)
    say(f"GET  /v1/lists          {len(lists['items'])} list(s) in this workspace")
    await _call(http, "GET", f"/v1/lists/{first['id']}", other, 404)
    say(f"GET  /v1/lists/{first['id']}       another workspace's key -> 404 (workspaces are isolated)")
    await _call(http, "POST", "/v1/lists", other, 403, json=payload)
    say("POST /v1/lists          read-only key -> 403")
    await _call(http, "GET", "/v1/lists", None, 401)
    say("GET  /v1/lists          no key -> 401")
    doc = await _call(http, "GET", "/v1/openapi.json")
    say(f"GET  /v1/openapi.json   OpenAPI {doc['openapi']}, {len(doc['paths'])} paths")
    await _import_sample(http, admin, first["id"])
    metrics = await _call(http, "GET", "/metrics")
    count = sum(1 for line in metrics.splitlines() if line.startswith("dispatcher_http_requests_total"))
    say(f"GET  /metrics           {count} request counters exported")
    return int(first["id"])


SAMPLE = Path(__file__).resolve().parent / "samples" / "contacts.csv"


async def _import_sample(http: aiohttp.ClientSession, key: str, list_id: int) -> None:
    say("\n-- importing the sample list --")
    data = SAMPLE.read_bytes()
    started = await _call(
        http,
        "POST",
        f"/v1/lists/{list_id}/imports?consent_source=demo-signup",
        key,
        202,
        data=data,
        headers={"Content-Type": "text/csv"},
    )
    say(f"POST /v1/lists/{list_id}/imports   {len(data):,} bytes, import {started['id']} {started['state']}")
    job = started
    for _ in range(600):
        job = await _call(http, "GET", f"/v1/imports/{started['id']}", key)
        say(
            f"GET  /v1/imports/{job['id']}        {job['state']:<9} rows {job['rows_done']:>4}  "
            f"{job['percent'] or 0:5.1f}%  rate {job['rows_per_second'] or 0:,.0f} rows/s"
        )
        if job["state"] in {"completed", "failed"}:
            break
        await asyncio.sleep(0.3)
    if job["state"] != "completed":
        raise DemoFailed(f"import did not complete: {job}")
    total = job["accepted"] + job["rejected"] + job["duplicate"] + job["suppressed"]
    say(
        f"   rows {job['rows_done']} = accepted {job['accepted']} + rejected {job['rejected']} "
        f"+ duplicate {job['duplicate']} + suppressed {job['suppressed']}  "
        f"({'ok' if total == job['rows_done'] else 'MISMATCH'})"
    )
    say(f"   reasons: {', '.join(f'{k} {v}' for k, v in sorted(job['reasons'].items()))}")
    rejects = await _call(http, "GET", f"/v1/imports/{job['id']}/rejects", key)
    say(f"GET  /v1/imports/{job['id']}/rejects   {len(rejects.splitlines()) - 1} rejected rows with reasons")
    if total != job["rows_done"]:
        raise DemoFailed("bucket invariant broken")


async def _wait_ready(http: aiohttp.ClientSession, worker: asyncio.subprocess.Process) -> dict[str, Any]:
    for _ in range(150):
        if worker.returncode is not None:
            raise DemoFailed(f"the worker exited with code {worker.returncode}")
        async with http.get("/readyz") as response:
            body: dict[str, Any] = await response.json()
        if response.status == 200 and body["workers"] >= 1:
            return body
        await asyncio.sleep(0.2)
    raise DemoFailed(f"service not ready with a worker after 30 s: {body}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


__all__ = ["run_demo"]
