"""What a worker needs to send a campaign's chunks, built once per campaign and kept for the worker's life.

A running campaign's template versions, windows and provider do not change (versions are pinned at start),
so compiling templates and building zone plans once per worker keeps the hot path to rendering and I/O.
Its *state* does change (pause, cancel): the sender reads that fresh for every chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.channels.base import SmsChannel
from dispatcher.channels.twilio_http import TwilioHttpChannel
from dispatcher.core.capping import CapPolicy
from dispatcher.core.rendering import CompiledTemplate, compile_template
from dispatcher.core.windows import (
    DEFAULT_QUIET,
    DEFAULT_WINDOWS,
    Window,
    ZonePlanner,
    parse_window,
    parse_windows,
    resolve_zones,
)
from dispatcher.errors import InputError
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.content import Provider
from dispatcher.storage.lists import get_list
from dispatcher.storage.templates import version_by_id


@dataclass
class CampaignRuntime:
    campaign_id: int
    workspace_id: int
    channel: str
    sender: str
    provider_id: int
    channel_client: SmsChannel
    price_per_segment: Decimal
    rate_per_s: float | None
    templates: dict[str, CompiledTemplate]
    windows: tuple[Window, ...]
    allowed: Window
    end_at: datetime
    list_timezone: str | None
    cap_policy: CapPolicy
    max_attempts: int
    planner: ZonePlanner
    _zones: dict[tuple[tuple[str, ...], str | None], tuple[str, ...]] = field(default_factory=dict)

    def zones(self, number_zones: Sequence[str], contact_zone: str | None, now: datetime) -> tuple[str, ...]:
        key = (tuple(number_zones), contact_zone)
        found = self._zones.get(key)
        if found is None:
            found = resolve_zones(
                number_zones, contact_zone, self.list_timezone, self.windows, self.allowed, now
            )
            self._zones[key] = found
        return found


async def build_runtime(
    session: AsyncSession, campaign: Campaign, http: aiohttp.ClientSession, now: datetime
) -> CampaignRuntime:
    provider = await session.get(Provider, campaign.provider_id) if campaign.provider_id else None
    if provider is None or provider.workspace_id != campaign.workspace_id:
        raise InputError(f"campaign {campaign.id} has no usable provider")
    schedule: dict[str, Any] = campaign.schedule or {}
    limits: dict[str, Any] = campaign.limits or {}
    windows = parse_windows(schedule["windows"]) if schedule.get("windows") else DEFAULT_WINDOWS
    allowed = parse_window(schedule["allowed"]) if schedule.get("allowed") else DEFAULT_QUIET
    end_at = _parse_time(schedule.get("end_at")) or now + timedelta(days=7)
    target = await get_list(session, campaign.workspace_id, campaign.list_id)
    return CampaignRuntime(
        campaign_id=campaign.id,
        workspace_id=campaign.workspace_id,
        channel=campaign.channel,
        sender=campaign.sender or _first_sender(provider),
        provider_id=provider.id,
        channel_client=channel_for(provider, http),
        price_per_segment=Decimal(provider.price_per_segment or 0),
        rate_per_s=limits.get("rate_per_s") or provider.rate_limit_per_s,
        templates=await _compile_variants(session, campaign),
        windows=windows,
        allowed=allowed,
        end_at=end_at,
        list_timezone=target.default_timezone if target else None,
        cap_policy=CapPolicy(
            per_local_day=int(limits.get("per_local_day", 1)),
            per_rolling_days=int(limits.get("per_rolling_days", 3)),
            rolling_days=int(limits.get("rolling_days", 7)),
        ),
        max_attempts=int(limits.get("max_attempts", 5)),
        planner=ZonePlanner(now - timedelta(days=1), end_at + timedelta(days=1), windows, allowed),
    )


def _parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _first_sender(provider: Provider) -> str:
    senders = provider.config.get("from") or []
    if not senders:
        raise InputError(f"provider {provider.name!r} has no sender number configured")
    return str(senders[0])


async def _compile_variants(session: AsyncSession, campaign: Campaign) -> dict[str, CompiledTemplate]:
    compiled: dict[str, CompiledTemplate] = {}
    for name, variant in (campaign.variants or {}).items():
        version = await version_by_id(session, campaign.workspace_id, int(variant["template_version_id"]))
        if version is None or version.body is None:
            raise InputError(f"campaign {campaign.id} variant {name}: template version not found")
        compiled[name] = compile_template(version.body, part="sms")
    if not compiled:
        raise InputError(f"campaign {campaign.id} has no template")
    return compiled


def channel_for(provider: Provider, http: aiohttp.ClientSession) -> SmsChannel:
    config = provider.config
    if provider.kind != "twilio_http":
        raise InputError(f"provider kind {provider.kind!r} cannot send SMS yet")
    return TwilioHttpChannel(
        base_url=str(config["base_url"]),
        account_sid=str(config["account_sid"]),
        auth_token=str(config["auth_token"]),
        session=http,
        concurrency=int(config.get("concurrency", 50)),
        timeout=float(config.get("timeout_s", 10.0)),
        supports_idempotency=bool(config.get("idempotency", True)),
    )
