"""What a worker needs to send a campaign's chunks, built once per campaign and refreshed now and then.

A running campaign's template versions and windows do not change (versions are pinned at start), so
compiling templates and building zone plans once keeps the hot path to rendering and I/O. Providers can be
disabled, re-enabled or re-prioritised mid-campaign, so the runtime is rebuilt every ``REFRESH`` seconds;
channel clients (HTTP settings, SMTP pools, SMPP binds) outlive rebuilds in :class:`ChannelPool`, keyed by
provider and config, so a rebuild never drops a connection. The campaign's *state* (pause, cancel) is read
fresh for every chunk by the sender.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.channels.base import EmailChannel, SmsChannel
from dispatcher.core.capping import CapPolicy
from dispatcher.core.rendering import CompiledTemplate, compile_template
from dispatcher.core.routing import Route, order_routes
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

REFRESH = 30.0  # seconds a runtime is trusted before providers are read again
AnyChannel = SmsChannel | EmailChannel
ChannelFactory = Callable[[Provider], AnyChannel]


@dataclass(frozen=True, slots=True)
class Content:
    """One variant's compiled parts: ``sms`` for SMS; ``subject``/``text``/``html`` for e-mail."""

    sms: CompiledTemplate | None = None
    subject: CompiledTemplate | None = None
    text: CompiledTemplate | None = None
    html: CompiledTemplate | None = None


@dataclass
class ProviderRoute:
    provider_id: int
    name: str
    kind: str
    client: AnyChannel
    sender: str
    price: Decimal  # per SMS segment, or per e-mail
    rate_per_s: float | None
    route: Route
    priority: int
    config: dict[str, Any]


@dataclass
class CampaignRuntime:
    campaign_id: int
    workspace_id: int
    channel: str
    providers: dict[int, ProviderRoute]
    routes: list[Route]
    duplicate_policy: str
    variants: dict[str, Content]
    windows: tuple[Window, ...]
    allowed: Window
    end_at: datetime
    list_timezone: str | None
    cap_policy: CapPolicy
    max_attempts: int
    rate_per_s: float | None  # the campaign's own ceiling, on top of each provider's
    max_bounce_rate: float
    bounce_min_sample: int
    planner: ZonePlanner
    sender: str | None
    zones_at: datetime
    built_at: float = field(default_factory=time.monotonic)
    links: dict[str, str] = field(default_factory=dict)  # URL → tracked link code
    _zones: dict[tuple[tuple[str, ...], str | None], tuple[str, ...]] = field(default_factory=dict)

    def zones(self, number_zones: Sequence[str], contact_zone: str | None) -> tuple[str, ...]:
        """Judged at :attr:`zones_at`, as planning judged them: a late tick, a retry or a resume must not
        move a recipient to a fallback zone the planner did not choose."""
        key = (tuple(number_zones), contact_zone)
        found = self._zones.get(key)
        if found is None:
            found = resolve_zones(
                number_zones, contact_zone, self.list_timezone, self.windows, self.allowed, self.zones_at
            )
            self._zones[key] = found
        return found

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.built_at > REFRESH


class ChannelPool:
    """Channel clients of one worker, one per (provider, config); closed when the worker stops."""

    def __init__(self, factory: ChannelFactory) -> None:
        self._factory = factory
        self._clients: dict[tuple[int, str], AnyChannel] = {}

    def get(self, provider: Provider) -> AnyChannel:
        digest = hashlib.sha256(json.dumps(provider.config, sort_keys=True, default=str).encode()).hexdigest()
        key = (provider.id, digest)
        client = self._clients.get(key)
        if client is None:
            client = self._factory(provider)
            self._clients[key] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


LinkLoader = Callable[[AsyncSession, Campaign, dict[str, Content]], Awaitable[dict[str, str]]]


def zone_anchor(campaign: Campaign, now: datetime) -> datetime:
    """The instant a campaign's recipients' zones are judged at, for its whole life: the start planning
    recorded (the later of its own now and ``start_at``), so planning and every tick after it resolve the
    same zones. Before planning (previews) or for a campaign planned before it was recorded: that rule
    applied to ``now``."""
    if campaign.zones_at is not None:
        recorded = campaign.zones_at
        return recorded if recorded.tzinfo else recorded.replace(tzinfo=UTC)
    start_at = _parse_time((campaign.schedule or {}).get("start_at"))
    return max(now, start_at) if start_at else now


async def build_runtime(
    session: AsyncSession,
    campaign: Campaign,
    channels: ChannelPool,
    now: datetime,
    links: LinkLoader | None = None,
) -> CampaignRuntime:
    schedule: dict[str, Any] = campaign.schedule or {}
    limits: dict[str, Any] = campaign.limits or {}
    providers = await _providers(session, campaign, channels, failover=bool(limits.get("failover", True)))
    windows = parse_windows(schedule["windows"]) if schedule.get("windows") else DEFAULT_WINDOWS
    allowed = parse_window(schedule["allowed"]) if schedule.get("allowed") else DEFAULT_QUIET
    end_at = _parse_time(schedule.get("end_at")) or now + timedelta(days=7)
    target = await get_list(session, campaign.workspace_id, campaign.list_id)
    variants = await _compile_variants(session, campaign)
    routes = order_routes(campaign.provider_id, [(p.route, p.priority) for p in providers])
    return CampaignRuntime(
        campaign_id=campaign.id,
        workspace_id=campaign.workspace_id,
        channel=campaign.channel,
        providers={p.provider_id: p for p in providers},
        routes=routes,
        duplicate_policy=campaign.duplicate_policy,
        variants=variants,
        windows=windows,
        allowed=allowed,
        end_at=end_at,
        list_timezone=target.default_timezone if target else None,
        cap_policy=CapPolicy(
            per_local_day=int(limits.get("per_local_day", 1)),
            per_rolling_days=int(limits.get("per_rolling_days", 3)),
            rolling_days=int(limits.get("rolling_days", 7)),
        ),
        max_attempts=int(limits.get("max_attempts", 10)),
        rate_per_s=limits.get("rate_per_s"),
        max_bounce_rate=float(limits.get("max_bounce_rate", 0.1)),
        bounce_min_sample=int(limits.get("bounce_min_sample", 200)),
        planner=ZonePlanner(now - timedelta(days=1), end_at + timedelta(days=1), windows, allowed),
        sender=campaign.sender,
        zones_at=zone_anchor(campaign, now),
        links=await links(session, campaign, variants) if links else {},
    )


async def _providers(
    session: AsyncSession, campaign: Campaign, channels: ChannelPool, *, failover: bool
) -> list[ProviderRoute]:
    query = sa.select(Provider).where(
        Provider.workspace_id == campaign.workspace_id,
        Provider.channel == campaign.channel,
        Provider.enabled.is_(True),
    )
    if not failover and campaign.provider_id is not None:
        query = query.where(Provider.id == campaign.provider_id)
    rows = list(await session.scalars(query.order_by(Provider.priority, Provider.id)))
    if not rows:
        raise InputError(f"campaign {campaign.id} has no enabled {campaign.channel} provider")
    return [_route(row, campaign, channels) for row in rows]


def _route(provider: Provider, campaign: Campaign, channels: ChannelPool) -> ProviderRoute:
    config = dict(provider.config or {})
    routes = config.get("routes") or {}
    client = channels.get(provider)
    primary = provider.id == campaign.provider_id
    # an e-mail From belongs to the campaign whatever relay carries it; SMS sender ids belong to the account
    own = campaign.sender if campaign.channel == "email" or primary else None
    sender = own or _first_sender(provider)
    return ProviderRoute(
        provider_id=provider.id,
        name=provider.name,
        kind=provider.kind,
        client=client,
        sender=sender,
        price=Decimal(provider.price_per_segment or 0),
        rate_per_s=provider.rate_limit_per_s,
        route=Route(
            provider_id=provider.id,
            idempotent=client.supports_idempotency,
            prefixes=tuple(str(p) for p in routes.get("prefixes") or ()),
            campaigns=tuple(int(c) for c in routes.get("campaigns") or ()),
        ),
        priority=provider.priority,
        config=config,
    )


def _parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _first_sender(provider: Provider) -> str:
    senders = provider.config.get("from") or []
    if senders:
        return str(senders[0] if isinstance(senders, list) else senders)
    raise InputError(f"provider {provider.name!r} has no sender configured")


async def _compile_variants(session: AsyncSession, campaign: Campaign) -> dict[str, Content]:
    compiled: dict[str, Content] = {}
    for name, variant in (campaign.variants or {}).items():
        version = await version_by_id(session, campaign.workspace_id, int(variant["template_version_id"]))
        if version is None:
            raise InputError(f"campaign {campaign.id} variant {name}: template version not found")
        if campaign.channel == "sms":
            if version.body is None:
                raise InputError(f"campaign {campaign.id} variant {name}: the template has no SMS body")
            compiled[name] = Content(sms=compile_template(version.body, part="sms"))
            continue
        if version.subject is None or (version.text_body is None and version.html_body is None):
            raise InputError(f"campaign {campaign.id} variant {name}: the template has no e-mail parts")
        compiled[name] = Content(
            subject=compile_template(version.subject, part="subject"),
            text=compile_template(version.text_body, part="text") if version.text_body else None,
            html=compile_template(version.html_body, part="html") if version.html_body else None,
        )
    if not compiled:
        raise InputError(f"campaign {campaign.id} has no template")
    return compiled
