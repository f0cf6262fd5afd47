"""Request and response models of the template endpoints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from dispatcher.api.schemas import MAX_VERSION, PageQuery, Strict
from dispatcher.core.zones import is_known_zone

Channel = Literal["sms", "email"]

_BODY = "SMS text (Jinja2, sandboxed). Required for sms templates."
_SUBJECT = "E-mail subject. Required for email templates."
_TEXT = "Plain-text e-mail part; an email template needs text, html or both."
_HTML = "HTML e-mail part (autoescaped)."


class TemplateCreate(Strict):
    name: str = Field(min_length=1, max_length=200, description="Unique among the workspace's templates")
    channel: Channel
    body: str | None = Field(None, description=_BODY)
    subject: str | None = Field(None, description=_SUBJECT)
    text: str | None = Field(None, description=_TEXT)
    html: str | None = Field(None, description=_HTML)


class TemplateUpdate(Strict):
    """Replaces the content with a new version (parts left out are absent from it, not inherited)."""

    name: str | None = Field(None, min_length=1, max_length=200, description="New name; unchanged if absent")
    channel: Channel | None = Field(None, description="Must match the template's channel if given")
    body: str | None = Field(None, description=_BODY)
    subject: str | None = Field(None, description=_SUBJECT)
    text: str | None = Field(None, description=_TEXT)
    html: str | None = Field(None, description=_HTML)


class TemplateQuery(PageQuery):
    channel: Channel | None = Field(None, description="Only templates of this channel")
    builtin: bool | None = Field(None, description="true: only shipped examples; false: only your own")


class TemplateSummary(BaseModel):
    id: int
    name: str
    channel: Channel
    current_version: int
    builtin: bool = Field(description="Shipped example: read-only, visible to every workspace")
    created_at: datetime
    updated_at: datetime


class TemplateVersionOut(BaseModel):
    template_id: int
    version: int
    version_id: int = Field(description="What a campaign pins: it keeps sending this version")
    channel: Channel
    body: str | None
    subject: str | None
    text: str | None
    html: str | None
    variables: list[str] = Field(description="Variables the template reads")
    created_at: datetime


class TemplateOut(TemplateSummary):
    current: TemplateVersionOut = Field(description="The current version's content")


class TemplatePage(BaseModel):
    items: list[TemplateSummary]
    next_cursor: str | None


class SampleContact(Strict):
    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=32)
    timezone: str | None = Field(None, max_length=64, description="IANA zone for the date filter")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Custom contact attributes")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not is_known_zone(value):
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


class PreviewRequest(Strict):
    variables: dict[str, Any] = Field(
        default_factory=dict, description="Campaign values, e.g. discount, code"
    )
    contact: SampleContact | None = Field(None, description="A sample recipient; overrides variables")
    version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="A past version; the current one if absent"
    )
    smart_encoding: bool = Field(
        False, description="Replace look-alike characters by GSM-7 ones when cheaper"
    )
    provider_price_per_segment: Decimal | None = Field(
        None, ge=0, le=1000, max_digits=14, decimal_places=6, description="Price of one SMS segment"
    )
    track_links: bool = Field(True, description="Count links at the length of tracked links")
    max_segments: int = Field(3, ge=1, le=20, description="Warn above this many SMS segments")


class SmsAnalysisOut(BaseModel):
    encoding: Literal["GSM-7", "UCS-2"]
    segments: int
    units: int = Field(description="Septets (GSM-7, extension characters count 2) or UTF-16 code units")
    characters: int
    segment_capacity: int
    non_gsm_characters: list[str] = Field(description="Characters that force UCS-2")
    suggestions: dict[str, str] = Field(description="GSM-7 replacements for those characters")


class CostOut(BaseModel):
    price_per_segment: Decimal
    segments: int
    total: Decimal


class PreviewWarning(BaseModel):
    code: str = Field(
        description="too_many_segments, ucs2_forced, no_opt_out, untracked_link, unresolved_variable, "
        "render_failed, no_unsubscribe_link"
    )
    message: str
    details: dict[str, Any]


class PreviewLink(BaseModel):
    url: str
    tracked_url: str | None = Field(description="Sample of the tracked form (same length); null if untracked")


class PreviewOut(BaseModel):
    template_id: int
    version: int
    channel: Channel
    parts: dict[str, str | None] = Field(
        description="Rendered body (sms) or subject/text/html (email); null where rendering failed"
    )
    sms: SmsAnalysisOut | None
    smart_encoded: bool
    cost: CostOut | None
    warnings: list[PreviewWarning]
    missing_variables: list[str] = Field(description="Variables with neither a value nor a default")
    links: list[PreviewLink]
    headers: dict[str, str] = Field(description="E-mail headers added on sending (List-Unsubscribe)")
