"""The gates a leased row passes before it may go: suppression, send window, throughput, frequency cap.

Each gate is checked again at send time, whatever planning decided: a suppression added a minute ago, a
window that closed while the row waited in the queue, another campaign that reached the contact first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.pipeline.limits import CapRequest, FrequencyCaps, RateLimiter
from dispatcher.pipeline.runtime import CampaignRuntime
from dispatcher.storage import ledger
from dispatcher.storage.ledger import Due, Final, Retry

CAP_HORIZON = timedelta(days=32)


@dataclass
class Gate:
    go: list[Due] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    finals: list[Final] = field(default_factory=list)
    zones: dict[int, str] = field(default_factory=dict)


async def run_gates(
    redis: Any,
    sessions: async_sessionmaker[AsyncSession],
    runtime: CampaignRuntime,
    rows: Sequence[Due],
    blocked: set[str],
    now: datetime,
) -> Gate:
    """``blocked``: the rows' suppressed addresses, read by the caller in the same session as the rows."""
    gate = Gate()
    for due in rows:
        if due.address in blocked:
            gate.finals.append(Final(due.id, "suppressed", "suppressed", None))
        else:
            _window(runtime, due, now, gate)
    await _throughput(redis, runtime, now, gate)
    await _caps(redis, sessions, runtime, now, gate)
    return gate


def _window(runtime: CampaignRuntime, due: Due, now: datetime, gate: Gate) -> None:
    zones = runtime.zones(due.time_zones, due.timezone, now)
    plan = runtime.planner.plan(zones)
    if plan.interval_at(now) is not None:
        gate.go.append(due)
        gate.zones[due.id] = zones[0]
        return
    later = plan.next_after(now)
    if later is None or later >= runtime.end_at:
        gate.finals.append(Final(due.id, "expired", "no_window_before_end", None))
    else:  # the window closed while the row waited: it waits for the next one, never crosses quiet hours
        gate.retries.append(Retry(due.id, later, "outside_window", None))


async def _throughput(redis: Any, runtime: CampaignRuntime, now: datetime, gate: Gate) -> None:
    if not gate.go or not runtime.rate_per_s:
        return
    rate = float(runtime.rate_per_s)
    granted, wait = await RateLimiter(redis).acquire(
        f"provider.{runtime.provider_id}", len(gate.go), rate, max(1, int(rate))
    )
    for due in gate.go[granted:]:
        later = now + timedelta(seconds=wait + random.uniform(0, 0.25))
        gate.retries.append(Retry(due.id, later, "throttled", None))
    gate.go = gate.go[:granted]


async def _caps(
    redis: Any,
    sessions: async_sessionmaker[AsyncSession],
    runtime: CampaignRuntime,
    now: datetime,
    gate: Gate,
) -> None:
    if not gate.go:
        return

    async def history(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, datetime]]]:
        addresses = [key.split(".", 1)[1] for _, key in keys]
        async with sessions() as session:
            found = await ledger.cap_history(
                session, runtime.workspace_id, runtime.channel, addresses, now - CAP_HORIZON
            )
        return {(channel, key): found.get(key.split(".", 1)[1], []) for channel, key in keys}

    caps = FrequencyCaps(redis, history=history)
    requests = [
        CapRequest(
            contact_id=f"w{runtime.workspace_id}.{due.address}",
            channel=runtime.channel,
            send_id=f"c{runtime.campaign_id}m{due.id}",
            at=now,
            zone=gate.zones[due.id],
            policy=runtime.cap_policy,
        )
        for due in gate.go
    ]
    allowed = await caps.reserve(requests)
    kept = []
    for due, ok in zip(gate.go, allowed, strict=True):
        if ok:
            kept.append(due)
        else:
            gate.finals.append(Final(due.id, "capped", "frequency_cap", None))
    gate.go = kept
