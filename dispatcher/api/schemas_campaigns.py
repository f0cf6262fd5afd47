"""Request and response models of campaigns (SPEC §5); providers are in schemas_providers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from dispatcher.api.schemas import MAX_ID, PageQuery, Strict
from dispatcher.api.schemas_providers import SENDER, Channel
from dispatcher.core.windows import parse_window, parse_windows
from dispatcher.errors import InputError
from dispatcher.ops.campaign_specs import VariantSpec

CampaignState = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
_SENDER_DOC = "E.164 number, short code or alphanumeric sender ID (SMS); e-mail address (e-mail)"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


class ScheduleIn(Strict):
    windows: str = Field("10:30-11:30,15:00-17:00", max_length=200, description="Send windows, local time")
    allowed: str = Field(
        "08:00-21:00", max_length=20, description="Allowed hours (outside: quiet), local time"
    )
    start_at: AwareDatetime | None = Field(None, description="Not before this instant (default: at start)")
    end_at: AwareDatetime | None = Field(
        None, description="Unsent messages expire here (default: start + 7 days)"
    )

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: str) -> str:
        try:
            return ",".join(str(w) for w in parse_windows(value))
        except InputError as exc:
            raise ValueError(exc.message) from None

    @field_validator("allowed")
    @classmethod
    def _allowed(cls, value: str) -> str:
        try:
            return str(parse_window(value))
        except InputError as exc:
            raise ValueError(exc.message) from None

    def stored(self) -> dict[str, Any]:
        return {
            "windows": self.windows, "allowed": self.allowed,
            "start_at": _iso(self.start_at), "end_at": _iso(self.end_at),
        }  # fmt: skip


class LimitsIn(Strict):
    per_local_day: int = Field(1, ge=1, le=100, description="Messages per contact per channel per local day")
    per_rolling_days: int = Field(3, ge=1, le=1000, description="Messages per contact per rolling window")
    rolling_days: int = Field(7, ge=1, le=90)
    rate_per_s: float | None = Field(None, gt=0, le=100_000, description="Overrides the provider's rate")
    bounce_threshold: float = Field(0.05, gt=0, le=1, description="Auto-pause above this failure share")
    max_attempts: int = Field(
        10, ge=1, le=20, description="Tries before a message fails (throttled or unreachable: not counted)"
    )


class VariantIn(Strict):
    template_id: int = Field(ge=1, le=MAX_ID)
    weight: int = Field(1, ge=0, le=10_000, description="Share of the audience, relative to the others")


class PilotIn(Strict):
    percent: int = Field(ge=1, le=99, description="Share of the audience sent first")
    release_after_minutes: int | None = Field(
        None,
        ge=1,
        le=43_200,
        description="Release the rest this long after the pilot's first send; null: by API",
    )


class CampaignFields(Strict):
    list_id: int | None = Field(None, ge=1, le=MAX_ID, description="Audience: a whole list…")
    segment_id: int | None = Field(None, ge=1, le=MAX_ID, description="…or a segment of one")
    template_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="One template (variant A), or give variants"
    )
    variants: list[VariantIn] | None = Field(None, min_length=1, max_length=10, description="A/B(/…) split")
    provider_id: int | None = Field(None, ge=1, le=MAX_ID, description="Required to start")
    sender: str | None = Field(None, pattern=SENDER, max_length=320, description=_SENDER_DOC)
    schedule: ScheduleIn | None = None
    limits: LimitsIn | None = None
    pilot: PilotIn | None = None
    budget: Decimal | None = Field(None, ge=0, le=10**8, decimal_places=6, description="Never spend past it")
    duplicate_policy: Literal["never", "resend"] | None = Field(
        None, description="A message that may have gone before a crash: never resent, or resent (counted)"
    )

    def changes(self) -> dict[str, Any]:
        """The given fields as :class:`dispatcher.ops.campaign_specs.CampaignSpec` fields."""
        given = self.model_fields_set
        if "template_id" in given and "variants" in given:
            message = "give template_id or variants, not both"
            raise InputError(message, details=[{"field": "variants", "message": message}])
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("name", "channel", "list_id", "segment_id", "provider_id", "sender", "budget")
            if k in given
        }
        if self.template_id is not None:
            out["variants"] = (VariantSpec(self.template_id),)
        if self.variants is not None:
            out["variants"] = tuple(VariantSpec(v.template_id, v.weight) for v in self.variants)
        if "schedule" in given:
            out["schedule"] = (self.schedule or ScheduleIn()).stored()
        if "limits" in given:
            out["limits"] = (self.limits or LimitsIn()).model_dump()
        if "pilot" in given:
            out["pilot_percent"] = self.pilot.percent if self.pilot else None
            out["pilot_delay_minutes"] = self.pilot.release_after_minutes if self.pilot else None
        if self.duplicate_policy is not None:
            out["duplicate_policy"] = self.duplicate_policy
        return {k: v for k, v in out.items() if v is not None or k not in ("name", "channel")}


class CampaignCreate(CampaignFields):
    name: str = Field(min_length=1, max_length=200)
    channel: Channel

    def spec_values(self) -> dict[str, Any]:
        values = self.changes()
        if "variants" not in values:
            message = "give template_id or variants"
            raise InputError(message, details=[{"field": "template_id", "message": message}])
        values.setdefault("schedule", ScheduleIn().stored())
        values.setdefault("limits", LimitsIn().model_dump())
        return values


class CampaignUpdate(CampaignFields):
    name: str | None = Field(None, min_length=1, max_length=200)
    channel: Channel | None = None


class CampaignQuery(PageQuery):
    state: CampaignState | None = None


class VariantOut(BaseModel):
    template_id: int
    template_version_id: int | None = Field(description="Pinned when the campaign starts")
    weight: int


class PilotOut(BaseModel):
    percent: int
    release_after_minutes: int | None
    release_at: datetime | None


class BatchOut(BaseModel):
    id: int
    seq: int
    code: str = Field(description="Tracking code carried by every message of the batch")
    kind: Literal["pilot", "main", "resend"]
    state: str = Field(description="held (pilot not released yet) or released")
    size: int
    release_at: datetime | None


class ProgressOut(BaseModel):
    total: int = Field(description="Ledger rows: one per recipient planned")
    planned: int
    deferred: int = Field(description="Planned rows whose first send instant is still ahead")
    queued: int
    sending: int
    sent: int
    delivered: int
    failed: int
    expired: int = Field(description="No send window left before end_at")
    suppressed: int
    capped: int
    cancelled: int
    excluded: int = Field(description="Audience members with no usable address for the channel (no row)")
    spent: Decimal


class CampaignOut(BaseModel):
    id: int
    name: str
    state: CampaignState
    channel: str
    list_id: int
    segment_id: int | None
    provider_id: int | None
    sender: str | None
    variants: dict[str, VariantOut]
    schedule: dict[str, Any] = Field(description="windows, allowed, start_at, end_at (filled in at start)")
    limits: dict[str, Any]
    pilot: PilotOut | None
    budget: Decimal | None
    spent: Decimal
    duplicate_policy: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CampaignDetail(CampaignOut):
    progress: ProgressOut
    batches: list[BatchOut]


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None


class ResendOut(BaseModel):
    resent: int = Field(description="Failed rows planned again in the new resend batch")
    skipped: int = Field(description="Failed rows with no send window left before end_at")
    campaign: CampaignDetail


class SpreadQuery(Strict):
    bucket: Literal["15min", "hour", "day"] = "hour"


class SpreadBucket(BaseModel):
    at: datetime
    count: int


class SpreadOut(BaseModel):
    campaign_id: int
    bucket: str
    start: datetime
    end: datetime
    recipients: int = Field(description="Draft: reachable audience. Started: rows still waiting to go")
    unplaceable: int = Field(description="No send instant before end: these would expire")
    buckets: list[SpreadBucket]
