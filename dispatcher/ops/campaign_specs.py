"""What a campaign is made of, checked against the workspace before it is stored or started.

The API validates shapes (pydantic); this module checks what needs the database: the list or segment, the
templates (visible, same channel) and the provider (same channel, knows the sender). Problems with a field
of the request are :class:`InputError` (422) naming the field; a campaign that is not ready to start is a
:class:`ConflictError` (409) saying what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.windows import clip_windows, parse_window, parse_windows
from dispatcher.errors import ConflictError, InputError, NotFoundError
from dispatcher.ops import templates as template_ops
from dispatcher.storage import lists as list_store
from dispatcher.storage import providers as provider_store
from dispatcher.storage import segments as segment_store
from dispatcher.storage.campaigns import Campaign

DEFAULT_WINDOWS = "10:30-11:30,15:00-17:00"
DEFAULT_ALLOWED = "08:00-21:00"
DEFAULT_LENGTH = timedelta(days=7)
DEFAULT_LIMITS: dict[str, Any] = {
    "per_local_day": 1,
    "per_rolling_days": 3,
    "rolling_days": 7,
    "rate_per_s": None,
    "bounce_threshold": 0.05,
    "max_attempts": 10,
}
VARIANT_NAMES = "ABCDEFGHIJ"


@dataclass(frozen=True, slots=True)
class VariantSpec:
    template_id: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """Every marketer-set field of a campaign; ``schedule`` holds ISO-8601 strings as stored."""

    name: str
    channel: str
    variants: tuple[VariantSpec, ...]
    list_id: int | None = None
    segment_id: int | None = None
    provider_id: int | None = None
    sender: str | None = None
    schedule: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    pilot_percent: int | None = None
    pilot_delay_minutes: int | None = None
    budget: Decimal | None = None
    duplicate_policy: str = "never"


def spec_of(campaign: Campaign) -> CampaignSpec:
    variants = tuple(
        VariantSpec(int(v["template_id"]), int(v.get("weight", 1)))
        for _, v in sorted(campaign.variants.items())
    )
    return CampaignSpec(
        name=campaign.name, channel=campaign.channel, variants=variants, list_id=campaign.list_id,
        segment_id=campaign.segment_id, provider_id=campaign.provider_id, sender=campaign.sender,
        schedule=dict(campaign.schedule), limits=dict(campaign.limits), pilot_percent=campaign.pilot_percent,
        pilot_delay_minutes=campaign.pilot_delay_minutes, budget=campaign.budget,
        duplicate_policy=campaign.duplicate_policy,
    )  # fmt: skip


def _bad(field_name: str, message: str) -> InputError:
    return InputError(message, details=[{"field": field_name, "message": message}])


def check_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    """The stored shape with defaults filled; windows must leave some time inside the allowed hours."""
    windows: str = schedule.get("windows") or DEFAULT_WINDOWS
    allowed: str = schedule.get("allowed") or DEFAULT_ALLOWED
    shaped = {
        "windows": windows,
        "allowed": allowed,
        "start_at": schedule.get("start_at"),
        "end_at": schedule.get("end_at"),
    }
    if not clip_windows(parse_windows(windows), parse_window(allowed)):
        raise _bad("schedule.windows", "no send window overlaps the allowed hours: nothing could ever go")
    start, end = shaped["start_at"], shaped["end_at"]
    if start and end and datetime.fromisoformat(end) <= datetime.fromisoformat(start):
        raise _bad("schedule.end_at", "end_at must be after start_at")
    return shaped


async def _audience(session: AsyncSession, workspace_id: int, spec: CampaignSpec) -> int:
    if spec.segment_id is not None:
        segment = await segment_store.get_segment(session, workspace_id, spec.segment_id)
        if segment is None:
            raise _bad("segment_id", f"segment {spec.segment_id} not found")
        if spec.list_id is not None and spec.list_id != segment.list_id:
            raise _bad(
                "list_id", f"segment {segment.id} belongs to list {segment.list_id}, not {spec.list_id}"
            )
        return segment.list_id
    if spec.list_id is None:
        raise _bad("list_id", "give the audience: list_id or segment_id")
    if await list_store.get_list(session, workspace_id, spec.list_id) is None:
        raise _bad("list_id", f"list {spec.list_id} not found")
    return spec.list_id


async def _variants(session: AsyncSession, workspace_id: int, spec: CampaignSpec) -> dict[str, Any]:
    if not 1 <= len(spec.variants) <= len(VARIANT_NAMES):
        raise _bad("variants", f"give 1 to {len(VARIANT_NAMES)} variants")
    if sum(v.weight for v in spec.variants) <= 0:
        raise _bad("variants", "variant weights must add up to more than 0")
    stored: dict[str, Any] = {}
    for index, variant in enumerate(spec.variants):
        where = "template_id" if len(spec.variants) == 1 else f"variants.{index}.template_id"
        try:
            template = await template_ops.get_template(session, workspace_id, variant.template_id)
        except NotFoundError:
            raise _bad(where, f"template {variant.template_id} not found") from None
        if template.channel != spec.channel:
            raise _bad(
                where, f"template {template.id} is for {template.channel}, the campaign is {spec.channel}"
            )
        stored[VARIANT_NAMES[index]] = {
            "template_id": template.id, "template_version_id": None, "weight": variant.weight,
        }  # fmt: skip
    return stored


async def _provider(session: AsyncSession, workspace_id: int, spec: CampaignSpec) -> None:
    if spec.provider_id is None:
        return
    provider = await provider_store.get_provider(session, workspace_id, spec.provider_id)
    if provider is None:
        raise _bad("provider_id", f"provider {spec.provider_id} not found")
    if provider.channel != spec.channel:
        raise _bad(
            "provider_id", f"provider {provider.id} sends {provider.channel}, the campaign is {spec.channel}"
        )
    senders = provider.config.get("from") or []
    if spec.sender is not None and senders and spec.sender not in senders:
        raise _bad("sender", f"provider {provider.id} does not send from {spec.sender!r}; it knows {senders}")


async def resolve(session: AsyncSession, workspace_id: int, spec: CampaignSpec) -> dict[str, Any]:
    """The campaign's column values, once every reference in ``spec`` checks out."""
    list_id = await _audience(session, workspace_id, spec)
    variants = await _variants(session, workspace_id, spec)
    await _provider(session, workspace_id, spec)
    if spec.pilot_delay_minutes is not None and spec.pilot_percent is None:
        raise _bad("pilot.release_after_minutes", "a release delay needs a pilot percent")
    return {
        "name": spec.name, "channel": spec.channel, "list_id": list_id, "segment_id": spec.segment_id,
        "provider_id": spec.provider_id, "sender": spec.sender, "variants": variants,
        "schedule": check_schedule(spec.schedule), "limits": {**DEFAULT_LIMITS, **spec.limits},
        "pilot_percent": spec.pilot_percent, "pilot_delay_minutes": spec.pilot_delay_minutes,
        "budget": spec.budget, "duplicate_policy": spec.duplicate_policy,
    }  # fmt: skip


async def ready_provider(session: AsyncSession, campaign: Campaign) -> None:
    """A campaign starts (or resends) only through an enabled provider of its channel."""
    if campaign.provider_id is None:
        raise ConflictError(f"campaign {campaign.id} has no provider: set provider_id (PUT) before starting")
    provider = await provider_store.get_provider(session, campaign.workspace_id, campaign.provider_id)
    if provider is None or provider.channel != campaign.channel:
        raise ConflictError(f"provider {campaign.provider_id} of campaign {campaign.id} is gone or changed")
    if not provider.enabled:
        raise ConflictError(f"provider {provider.id} is disabled: enable it (PUT enabled=true) first")


async def pin_variants(session: AsyncSession, campaign: Campaign) -> dict[str, Any]:
    """Each variant's current template version, compiled once to be sure it renders: what will be sent."""
    pinned: dict[str, Any] = {}
    for name, variant in sorted(campaign.variants.items()):
        try:
            view = await template_ops.get_version(session, campaign.workspace_id, int(variant["template_id"]))
        except NotFoundError:
            raise ConflictError(
                f"template {variant['template_id']} of variant {name} was deleted; choose another (PUT)"
            ) from None
        template_ops.compile_parts(view.template.channel, view.parts)
        pinned[name] = {**variant, "template_version_id": view.version.id}
    return pinned


def frozen_schedule(schedule: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The schedule as started: ``end_at`` filled in (start + 7 days), refused when it has passed."""
    start_at = schedule.get("start_at")
    start = max(now, datetime.fromisoformat(start_at)) if start_at else now
    end_at = schedule.get("end_at")
    end = datetime.fromisoformat(end_at) if end_at else start + DEFAULT_LENGTH
    if end <= start:
        raise ConflictError(f"the campaign's end_at ({end.isoformat()}) has passed: set a later one (PUT)")
    return {**schedule, "end_at": end.isoformat()}
