"""Report queries and replies. The field descriptions are the published definitions (see docs/reports.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dispatcher.api.schemas import Strict

_DIMENSION = "(campaign|batch|channel|provider|sender|variant)"
_GROUP_BY = rf"^\s*{_DIMENSION}(\s*,\s*{_DIMENSION})*\s*$"
_UNIQUE = "Unique contacts (per campaign) with "


class ReportQuery(Strict):
    group_by: str = Field(
        "campaign",
        pattern=_GROUP_BY,
        description="Comma-separated dimensions: campaign, batch, channel, provider, sender, variant",
    )
    period: Literal["day", "week", "month"] | None = Field(
        None, description="Also group by period (named by its first day; weeks start on Monday)"
    )
    tz: Literal["utc", "local"] = Field(
        "utc", description="Cut periods in UTC or in each recipient's time zone"
    )
    from_: AwareDatetime | None = Field(
        None, alias="from", description="Messages sent (or planned) at or after"
    )
    to: AwareDatetime | None = Field(None, description="Messages sent (or planned) before")
    campaign_id: int | None = Field(None, ge=1, le=10**18, description="Only this campaign")
    format: Literal["json", "csv"] = Field("json", description="csv streams a spreadsheet-safe file")


class ReportPageQuery(Strict):
    period: Literal["day", "week", "month"] = "day"
    tz: Literal["utc", "local"] = "utc"
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None
    campaign_id: int | None = Field(None, ge=1, le=10**18)


class FormatQuery(Strict):
    format: Literal["json", "csv"] = Field("json", description="csv streams a spreadsheet-safe file")


class Figures(BaseModel):
    messages: int = Field(description="Ledger rows: every recipient planned")
    sent: int = Field(description="Rows the provider accepted")
    delivered: int = Field(description="Rows with a delivered receipt")
    failed: int = Field(description="Rows refused at submission or reported undelivered")
    pending: int = Field(description="Rows still planned, queued or sending")
    expired: int
    suppressed: int
    capped: int
    cancelled: int
    possible_duplicates: int = Field(description="Rows resent after an attempt of unknown outcome")
    responders: int = Field(description=_UNIQUE + "a reply or a human click")
    repliers: int = Field(description=_UNIQUE + "a reply")
    clickers: int = Field(description=_UNIQUE + "a human click")
    machine_clickers: int = Field(description=_UNIQUE + "a click flagged as a machine's")
    openers: int = Field(description=_UNIQUE + "a human open")
    machine_openers: int = Field(description=_UNIQUE + "an open flagged as a machine's (reported apart)")
    opted_out: int = Field(description=_UNIQUE + "an opt-out reply or an unsubscribe")
    converters: int = Field(description=_UNIQUE + "a conversion")
    conversions: int = Field(description="Conversion events")
    bounced: int = Field(description=_UNIQUE + "a bounce")
    complained: int = Field(description=_UNIQUE + "a complaint")
    conversion_value: Decimal = Field(description="Sum of conversion values")
    cost: Decimal = Field(description="Sum of per-message cost")
    median_seconds_to_delivery: float | None = Field(description="Median of delivered_at − sent_at")
    arrival_rate: float | None = Field(description="delivered / sent; null when nothing was sent")
    response_rate: float | None = Field(description="responders / delivered")
    click_rate: float | None = Field(description="clickers / delivered")
    reply_rate: float | None = Field(description="repliers / delivered")
    open_rate: float | None = Field(description="openers / delivered")
    machine_open_rate: float | None = Field(description="machine_openers / delivered")
    optout_rate: float | None = Field(description="opted_out / delivered")
    conversion_rate: float | None = Field(description="converters / delivered")
    bounce_rate: float | None = Field(description="bounced / sent")
    complaint_rate: float | None = Field(description="complained / delivered")
    cost_per_delivered: Decimal | None = Field(description="cost / delivered")
    cost_per_conversion: Decimal | None = Field(description="cost / conversions")


class GroupRow(Figures):
    group: dict[str, str | int | None] = Field(
        description="The row's dimensions; campaign, batch and provider come as <name>_id plus a display name"
    )


class GroupedReport(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    group_by: list[str]
    period: str | None
    tz: Literal["utc", "local"]
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    totals: Figures
    rows: list[GroupRow]


class CampaignBrief(BaseModel):
    id: int
    name: str
    channel: str
    state: str


class FailureReason(BaseModel):
    code: str = Field(description="The provider's or receipt's error code; 'unknown' when none was given")
    count: int


class CampaignReport(BaseModel):
    campaign: CampaignBrief
    totals: Figures
    batches: list[GroupRow]
    channels: list[GroupRow]
    variants: list[GroupRow]
    timeline: list[GroupRow] = Field(description="Per UTC day of sending")
    failure_reasons: list[FailureReason]
