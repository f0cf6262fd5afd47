"""Planning benchmark (issue 5): freeze an audience of N contacts into the send ledger on PostgreSQL.

    .venv/bin/python -m bench.planning                 # 1,000,000 contacts
    .venv/bin/python -m bench.planning --contacts 200000 --pilot 10 --ab

Seeds the contacts with COPY (US numbers over a dozen area codes in six zones, Alaska numbers with two
zones, ~2% e-mail only, ~0.5% suppressed), starts a campaign through the ops layer and runs the planning
job in-process (the same coroutine arq runs), timing only the job. Prints rows/s and the ledger's state
counts. Needs PostgreSQL at 127.0.0.1:5432 (user postgres; database ``dispatcher_bench_plan`` is recreated)
and Redis at 127.0.0.1:6379 (db 13 is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import sqlalchemy as sa
from arq import create_pool

from dispatcher.ops import campaigns as campaign_ops
from dispatcher.ops import lists as list_ops
from dispatcher.ops import providers as provider_ops
from dispatcher.ops import templates as template_ops
from dispatcher.ops.auth import create_key
from dispatcher.ops.campaign_specs import CampaignSpec, VariantSpec
from dispatcher.pipeline.context import WorkerResources, attach
from dispatcher.pipeline.planning import plan_campaign
from dispatcher.pipeline.queue import redis_settings
from dispatcher.settings import Settings
from dispatcher.storage.campaigns import Message
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.migrations import upgrade
from dispatcher.storage.templates import TemplateParts

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "dispatcher_bench_plan"
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB}"
REDIS_URL = "redis://127.0.0.1:6379/13"
AREAS = {
    "212": ["America/New_York"], "617": ["America/New_York"], "305": ["America/New_York"],
    "312": ["America/Chicago"], "214": ["America/Chicago"], "303": ["America/Denver"],
    "602": ["America/Phoenix"], "415": ["America/Los_Angeles"], "206": ["America/Los_Angeles"],
    "808": ["Pacific/Honolulu"], "907": ["America/Adak", "America/Anchorage"],
}  # fmt: skip
STUB_CONFIG = {
    "base_url": "http://127.0.0.1:9",
    "account_sid": "AC",
    "auth_token": "t",
    "from": ["+15005550006"],
}


async def recreate_database() -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await conn.close()


def contact_records(workspace_id: int, list_id: int, count: int, now: datetime) -> list[tuple[Any, ...]]:
    rng = random.Random(5)
    areas = list(AREAS)
    records = []
    for n in range(count):
        area = areas[n % len(areas)]
        phone = None if rng.random() < 0.02 else f"+1{area}{2000000 + n:07d}"[:12]
        email = f"p{n}@example.com"
        zones = json.dumps(AREAS[area] if phone else [])
        key = phone or email
        records.append(
            (workspace_id, list_id, key, phone, "mobile", "US", zones, phone is not None, email, "{}", now)
        )
    return records


async def seed(count: int, now: datetime) -> tuple[int, int, int, list[int]]:
    engine = create_engine(PG_URL)
    async with session_factory(engine).begin() as session:
        key = await create_key(session, workspace_slug="bench", name="bench", scopes=("admin",), now=now)
        workspace_id = key.workspace_id
        target = await list_ops.create_list(session, workspace_id, name="bench", default_region="US", now=now)
        provider = await provider_ops.create_provider(
            session, workspace_id,
            {"name": "stub", "channel": "sms", "kind": "twilio_http", "config": STUB_CONFIG}, now=now,
            allow_private=True,
        )  # fmt: skip
        templates = []
        for name in ("A", "B"):
            parts = TemplateParts(body=f"{name}: 20% off today. Reply STOP to opt out")
            view = await template_ops.create_template(
                session, workspace_id, name=name, channel="sms", parts=parts, now=now
            )
            templates.append(view.template.id)
    await engine.dispose()
    conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
    try:
        columns = ["workspace_id", "list_id", "dedupe_key", "phone", "phone_type", "phone_region",
                   "time_zones", "sms_capable", "email", "attributes", "created_at"]  # fmt: skip
        records = contact_records(workspace_id, target.id, count, now)
        await conn.copy_records_to_table("contacts", records=records, columns=columns)
        await conn.execute(
            "INSERT INTO suppressions (workspace_id, channel, address, reason, source, created_at) "
            "SELECT workspace_id, 'sms', phone, 'manual', 'bench', now() FROM contacts "
            "WHERE phone IS NOT NULL AND id % 200 = 0"
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return workspace_id, target.id, provider.id, templates


async def run(count: int, pilot: int | None, ab: bool) -> None:
    now = datetime.now(UTC)
    await recreate_database()
    await asyncio.to_thread(upgrade, PG_URL)
    t0 = time.perf_counter()
    workspace_id, list_id, provider_id, templates = await seed(count, now)
    print(f"seeded {count:,} contacts in {time.perf_counter() - t0:.1f} s")
    engine = create_engine(PG_URL)
    sessions = session_factory(engine)
    variants = tuple(VariantSpec(t, w) for t, w in zip(templates, (3, 1), strict=True)) if ab else (
        VariantSpec(templates[0]),)  # fmt: skip
    start_at = (now + timedelta(days=1)).replace(microsecond=0)
    spec = CampaignSpec(
        name="bench", channel="sms", variants=variants, list_id=list_id, provider_id=provider_id,
        schedule={"start_at": start_at.isoformat(), "end_at": (start_at + timedelta(days=7)).isoformat()},
        pilot_percent=pilot,
    )  # fmt: skip
    async with sessions.begin() as session:
        campaign = await campaign_ops.create_campaign(session, workspace_id, spec, now=now)
    queue = await create_pool(redis_settings(REDIS_URL))
    await queue.flushdb()
    await campaign_ops.start_campaign(
        sessions, queue, workspace_id, campaign.id, now=now, queue_name="bench:planning"
    )
    await queue.flushdb()
    await queue.aclose()
    settings = Settings(database_url=PG_URL, redis_url=REDIS_URL, var_dir=Path("var"))
    http = aiohttp.ClientSession()
    ctx: dict[str, Any] = {}
    attach(ctx, WorkerResources(settings, engine, sessions, http, "bench", socket.gethostname(), os.getpid()))
    t0 = time.perf_counter()
    tally = await plan_campaign(ctx, campaign.id)
    elapsed = time.perf_counter() - t0
    await http.close()
    async with sessions() as session:
        rows = await session.scalar(sa.select(sa.func.count()).where(Message.campaign_id == campaign.id))
    await engine.dispose()
    speed = count / elapsed
    print(f"planned {count:,} contacts -> {rows:,} ledger rows in {elapsed:.1f} s ({speed:,.0f} contacts/s)")
    print(f"tally: {tally}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--pilot", type=int, default=None, help="pilot percent")
    parser.add_argument("--ab", action="store_true", help="A/B split 3:1")
    args = parser.parse_args()
    asyncio.run(run(args.contacts, args.pilot, args.ab))


if __name__ == "__main__":
    main()
