"""The gates a leased row passes before it may go: suppression, send window, route, throughput, cap.

Each gate is checked again at send time, whatever planning decided: a suppression added a minute ago, a
window that closed while the row waited in the queue, another campaign that reached the contact first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.core.capping import contact_key, send_key
from dispatcher.core.routing import choose
from dispatcher.logs import get_logger
from dispatcher.pipeline.breaker import Breakers
from dispatcher.pipeline.compose import Rendered
from dispatcher.pipeline.limits import CapRequest, FrequencyCaps
from dispatcher.pipeline.outcomes import Writes
from dispatcher.pipeline.runtime import CampaignRuntime
from dispatcher.pipeline.throughput import RateLimiter
from dispatcher.storage import cap_history
from dispatcher.storage.ledger_rows import Due, Final, Retry

CAP_HORIZON = timedelta(days=32)
log = get_logger(__name__)


@dataclass
class Gate:
    go: list[Due] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    finals: list[Final] = field(default_factory=list)
    zones: dict[int, str] = field(default_factory=dict)
    provider: dict[int, int] = field(default_factory=dict)  # message id → provider it goes through
    duplicates: set[int] = field(default_factory=set)  # resent after doubt, without provider dedupe
    pause: str | None = None  # the campaign must pause (budget exhausted)
    rendered: dict[int, Rendered] = field(default_factory=dict)  # message id → its built message


async def run_gates(
    redis: Any,
    sessions: async_sessionmaker[AsyncSession],
    runtime: CampaignRuntime,
    rows: Sequence[Due],
    blocked: set[str],
    now: datetime,
    prepare: Callable[[Gate], None] | None = None,
) -> Gate:
    """``blocked``: the rows' suppressed addresses, read by the caller in the same session as the rows.

    ``prepare`` builds the messages of the rows still going (dropping those it cannot build) just before
    the caps: a message that cannot be built never takes one of its recipient's cap slots."""
    gate = Gate()
    for due in rows:
        if due.address in blocked:
            gate.finals.append(Final(due.id, "suppressed", "suppressed", None))
        else:
            _window(runtime, due, now, gate)
    await _route(redis, runtime, now, gate)
    await _throughput(redis, runtime, now, gate)
    if prepare is not None:
        prepare(gate)
    await _caps(redis, sessions, runtime, now, gate)
    return gate


def _window(runtime: CampaignRuntime, due: Due, now: datetime, gate: Gate) -> None:
    if now >= runtime.end_at:  # a retry that waited past the end (its provider never came back) goes no more
        gate.finals.append(Final(due.id, "expired", "no_window_before_end", None))
        return
    zones = runtime.zones(due.time_zones, due.timezone)
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


async def _route(redis: Any, runtime: CampaignRuntime, now: datetime, gate: Gate) -> None:
    if not gate.go:
        return
    breakers = Breakers(redis)
    open_circuits = await breakers.open_among(r.provider_id for r in runtime.routes)
    kept: list[Due] = []
    waiting: list[Due] = []
    for due in gate.go:
        pinned = due.provider_id if due.ambiguous else None
        choice = choose(
            runtime.routes,
            address=due.address,
            campaign_id=runtime.campaign_id,
            open_circuits=open_circuits,
            pinned_to=pinned,
            duplicate_policy=runtime.duplicate_policy,
        )
        if choice.decision == "send" and choice.provider_id is not None:
            kept.append(due)
            gate.provider[due.id] = choice.provider_id
            if choice.possible_duplicate:
                gate.duplicates.add(due.id)
        elif choice.decision == "wait":
            waiting.append(due)
        elif choice.decision == "unconfirmed":
            detail = "the last attempt may have arrived and its provider cannot deduplicate a resend"
            gate.finals.append(Final(due.id, "failed", "unconfirmed", detail))
        else:
            gate.finals.append(Final(due.id, "failed", "no_route", "no provider's routes take this address"))
    if waiting:  # every provider that could take them is out: try again when the first circuit closes
        delay = max(1.0, await breakers.reopen_in(open_circuits))
        for due in waiting:
            later = now + timedelta(seconds=delay + random.uniform(0, 1.0))
            gate.retries.append(Retry(due.id, later, "providers_unavailable", None, ambiguous=due.ambiguous))
    gate.go = kept


async def _throughput(redis: Any, runtime: CampaignRuntime, now: datetime, gate: Gate) -> None:
    """Each provider's rate (shared by every worker and campaign on it), then the campaign's own."""
    if not gate.go:
        return
    limiter = RateLimiter(redis)
    limits: list[tuple[str, float, list[Due]]] = []
    for provider_id, rows in _by_provider(gate).items():
        rate = runtime.providers[provider_id].rate_per_s
        if rate:
            limits.append((f"provider.{provider_id}", float(rate), rows))
    if runtime.rate_per_s:
        limits.append((f"campaign.{runtime.campaign_id}", float(runtime.rate_per_s), list(gate.go)))
    refused: set[int] = set()
    for key, rate, rows in limits:
        wanted = [due for due in rows if due.id not in refused]
        granted, wait = await limiter.acquire(key, len(wanted), rate, max(1, int(rate)))
        for due in wanted[granted:]:
            refused.add(due.id)
            later = now + timedelta(seconds=wait + random.uniform(0, 0.25))
            gate.retries.append(Retry(due.id, later, "throttled", None, ambiguous=due.ambiguous))
    if refused:
        gate.go = [due for due in gate.go if due.id not in refused]


def _by_provider(gate: Gate) -> dict[int, list[Due]]:
    groups: dict[int, list[Due]] = {}
    for due in gate.go:
        groups.setdefault(gate.provider[due.id], []).append(due)
    return groups


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
            found = await cap_history.cap_history(
                session, runtime.workspace_id, runtime.channel, addresses, now - CAP_HORIZON
            )
        return {(channel, key): found.get(key.split(".", 1)[1], []) for channel, key in keys}

    caps = FrequencyCaps(redis, history=history)
    allowed = await caps.reserve([_cap_request(runtime, gate, due, now) for due in gate.go])
    kept = []
    for due, ok in zip(gate.go, allowed, strict=True):
        if ok:
            kept.append(due)
        else:
            gate.finals.append(Final(due.id, "capped", "frequency_cap", None))
    gate.go = kept


def _cap_request(runtime: CampaignRuntime, gate: Gate, due: Due, now: datetime) -> CapRequest:
    return CapRequest(
        contact_id=contact_key(runtime.workspace_id, due.address),
        channel=runtime.channel,
        send_id=send_key(runtime.campaign_id, due.id),
        at=now,
        zone=gate.zones[due.id],
        policy=runtime.cap_policy,
    )


def held_back(gate: Gate) -> list[Due]:
    """The rows the budget stopped after they took their cap slot, unless an earlier attempt is in doubt."""
    rendered = gate.rendered
    ids = [retry.id for retry in gate.retries if retry.error_code == "budget_exhausted"]
    return [rendered[i].due for i in ids if i in rendered and not rendered[i].due.ambiguous]


def never_arrived(gate: Gate, writes: Writes) -> list[Due]:
    """The sent rows of a chunk that certainly reached nobody: refused by the provider, failed for good,
    or retried after an attempt that handed nothing over.

    Not a row in doubt (this or an earlier attempt may have arrived: doubt counts as sent), and not a row
    whose lease was lost on the way (its slot is its new owner's: the same send id)."""
    ids = [retry.id for retry in writes.retries if not retry.ambiguous]
    ids += [f.id for f in writes.finals if f.state == "failed" and f.error_code != "unconfirmed"]
    rendered = gate.rendered
    return [rendered[i].due for i in ids if i in rendered and not rendered[i].due.ambiguous]


async def give_back_caps(
    redis: Any, runtime: CampaignRuntime, gate: Gate, dues: Sequence[Due], now: datetime
) -> int:
    """Free the cap slots of rows that never reached their recipient (:func:`never_arrived`,
    :func:`held_back`): a failed message counts against nobody's day, as in the ledger, which caps are
    rebuilt from; a retried one takes a slot again when it goes.

    Called while the chunk still holds the rows, before their new state is written: no other job can
    have claimed them and taken the same slot (one send id per row), which a later release would free.
    A crash after it leaves the rows leased, and the sweeper retries them as in doubt; they did not
    arrive, so no cap is missed. A Redis error keeps the slots taken: the cautious side."""
    if not dues:
        return 0
    try:
        return await FrequencyCaps(redis).release([_cap_request(runtime, gate, due, now) for due in dues])
    except RedisError:
        log.warning("caps.release_failed", campaign_id=runtime.campaign_id, rows=len(dues), exc_info=True)
        return 0
